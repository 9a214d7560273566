#pragma once
// Runs a sweep: every trial is an ordinary pipeline run of the base experiment with the trial's
// values, so trials share the cache and a stage that several trials have in common (same key)
// executes once — a trial that needs it while another builds it waits on the key's lock and
// then reuses the entry. Trials run `jobs` at a time, each stage with cores / jobs threads, so
// trials × threads never exceed the cores. The sweep's progress lives in a state file
// (sweep_state.h): running the same command again skips finished trials (they keep their MLflow
// runs under the same parent) and restarts the others, whose training resumes from its last
// committed epoch checkpoint.
#include <cstdio>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "pipeline/dag/stage_registry.h"
#include "pipeline/exec/project.h"
#include "pipeline/sweep/sweep_definition.h"
#include "pipeline/sweep/sweep_state.h"
#include "pipeline/sweep/sweep_summary.h"
#include "pipeline/sweep/trial_expansion.h"

namespace petal {

struct SweepRunOptions {
  int jobs = 0;                     // trials at once; 0: the sweep file's, else the cores
  std::optional<bool> fail_fast;    // unset: the sweep file's
  bool no_tracking = false;
  bool verify = false;              // re-hash cached outputs while planning
  bool charts = true;               // draw the comparison charts (petal-data-worker)
  bool list_only = false;           // print the trials and their cache state; run nothing
  std::FILE* out = stdout;
  const StageRegistry* registry = nullptr;  // null: the built-in stages
};

struct SweepResult {
  int exit_code = 0;  // 0 all trials finished, 1 one failed, 130 interrupted
  SweepState state;
  SweepSummary summary;
  std::filesystem::path state_file;
  std::filesystem::path summary_dir;
  std::size_t stage_instances = 0;  // stages over all trials
  std::size_t distinct_stages = 0;  // distinct keys among them: what executes at most
  std::size_t executed = 0;         // stages this invocation ran
  int jobs = 1;
  int threads_per_trial = 1;
  double seconds = 0;
};

// Throws PetalError for a bad sweep file or trial (with the sweep file's location), or when the
// same sweep is already running in another process.
SweepResult run_sweep(const SweepDefinition& sweep, const Project& project, const SweepRunOptions& options);

}  // namespace petal
