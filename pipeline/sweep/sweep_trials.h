#pragma once
// A sweep's trials resolved into experiments and graphs, the id that names the sweep's state, and
// the files under <state>/sweeps/ that belong to it. Shared by everything that runs, summarizes or
// emits a sweep, so that all of them agree on which sweep (and which state file) they mean.
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "pipeline/config/experiment.h"
#include "pipeline/dag/graph.h"
#include "pipeline/dag/stage_registry.h"
#include "pipeline/exec/planner.h"
#include "pipeline/exec/project.h"
#include "pipeline/sweep/sweep_definition.h"
#include "pipeline/sweep/sweep_state.h"
#include "pipeline/sweep/trial_expansion.h"

namespace petal {

// One trial's resolved experiment, graph and plan (the graph points into the experiment, so
// neither may move: trials are held by unique_ptr).
struct TrialWork {
  Trial trial;
  Experiment experiment;
  Graph graph;
  Plan plan;  // filled by whoever runs or lists the trial
};

// Every trial of the sweep, checked: a bad value is reported at its line in the sweep file, once
// (the first trial's mistakes stand for all).
std::vector<std::unique_ptr<TrialWork>> load_trials(const SweepDefinition& sweep, const StageRegistry& registry);

// Plans every trial against the cache (TrialWork::plan) and counts the stages over all trials and
// the distinct keys among them: what a sweep executes at most, the rest being shared.
struct StageSharing {
  std::size_t instances = 0;
  std::size_t distinct = 0;
};
StageSharing plan_trials(std::vector<std::unique_ptr<TrialWork>>& trials, const StageCache& cache, DigestCache& digests,
                         bool verify);

// SHA-256 over the resolved trials, the name and the objective: another definition is another sweep.
std::string sweep_digest(const SweepDefinition& sweep, const std::vector<std::unique_ptr<TrialWork>>& trials);

// "<name with only [A-Za-z0-9_-], at most 60 characters>-<first 12 hex digits of the digest>".
std::string sweep_id_of(const SweepDefinition& sweep, const std::string& digest);

// Where a sweep keeps its things, all under <state>/sweeps/.
struct SweepFiles {
  std::filesystem::path state_file;   // <id>.json: the progress (sweep_state.h)
  std::filesystem::path summary_dir;  // <id>/: the comparison files
  // <id>.lock: held exclusively by a whole-sweep run and by --summarize, shared by one-trial runs,
  // so neither kind of run overwrites the state under the other.
  std::filesystem::path sweep_lock;
  std::filesystem::path state_lock;   // <id>.state.lock: held around each read-modify-write of the state
  std::filesystem::path trial_lock(const std::string& trial_id) const;  // <id>.<trial>.lock
};
SweepFiles sweep_files(const Project& project, const std::string& sweep_id);

// The state a sweep starts from: every trial pending, each with the petal run id it keeps for life
// (one fresh run id per sweep, suffixed with the trial's id).
SweepState new_sweep_state(const SweepDefinition& sweep, const std::vector<std::unique_ptr<TrialWork>>& trials,
                           const std::string& digest, const std::string& sweep_id);

// Throws PetalError (naming the state file and what to do) when a state lists another number of
// trials than the sweep expands to.
void check_state_matches(const SweepState& state, std::size_t trial_count, const std::filesystem::path& state_file);

}  // namespace petal
