#include "pipeline/sweep/sweep_trials.h"

#include <set>

#include <cctype>

#include "pipeline/util/error.h"
#include "pipeline/util/fs.h"
#include "pipeline/util/sha256.h"

namespace petal {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

std::string safe_name(const std::string& name) {
  std::string out;
  for (unsigned char c : name) out += std::isalnum(c) || c == '-' || c == '_' ? static_cast<char>(c) : '_';
  return out.substr(0, 60);
}

// A range's two ends are checked like any value of the parameter, so a range that reaches outside
// what the parameter accepts fails before any trial runs (draws may miss the bad end for long).
void check_range_ends(const SweepDefinition& sweep, const StageRegistry& registry) {
  for (const Distribution& d : sweep.random) {
    if (d.kind == Distribution::Kind::Choice) continue;
    for (const double end : {d.low, d.high}) {
      LoadOptions options = fixed_load_options(sweep);
      const json value = d.kind == Distribution::Kind::IntUniform ? json(static_cast<std::int64_t>(end)) : json(end);
      options.values.push_back({{d.param.stage, d.param.key}, value, d.where});
      try {
        load_experiment(sweep.experiment, registry, options);
      } catch (const PetalError& e) {
        throw PetalError("the range of " + d.param.text() + " ends at " + value.dump() + ": " + format_error(e, false),
                         {}, e.exit_code());
      }
    }
  }
}

}  // namespace

std::vector<std::unique_ptr<TrialWork>> load_trials(const SweepDefinition& sweep, const StageRegistry& registry) {
  const Experiment base = load_experiment(sweep.experiment, registry, fixed_load_options(sweep));
  const std::vector<ParamPath> seed_keys = sweep.seed_keys.empty() ? default_seed_keys(base) : sweep.seed_keys;
  if (!sweep.seeds.empty() && seed_keys.empty()) {
    throw PetalError("repeat.seeds: the base experiment has no stage with a `seed` (other than download and split); "
                     "name the keys to set, e.g. keys = [\"split.seed\"]",
                     sweep.seeds_where);
  }
  check_range_ends(sweep, registry);
  std::vector<std::unique_ptr<TrialWork>> trials;
  for (Trial& trial : expand_trials(sweep, seed_keys)) {
    auto work = std::make_unique<TrialWork>();
    try {
      work->experiment = load_experiment(sweep.experiment, registry, trial.load_options(sweep));
    } catch (const PetalError& e) {
      // Every trial would report the same mistakes: the first trial's are enough.
      throw PetalError("trial " + trial.id + " (" + trial.label + "): " + format_error(e, false), {}, e.exit_code());
    }
    work->trial = std::move(trial);
    work->graph = Graph::build(work->experiment, registry);
    trials.push_back(std::move(work));
  }
  return trials;
}

std::string sweep_digest(const SweepDefinition& sweep, const std::vector<std::unique_ptr<TrialWork>>& trials) {
  json all = json::array();
  for (const auto& t : trials) all.push_back({{"id", t->trial.id}, {"experiment", t->experiment.to_json()}});
  return sha256_hex(json{{"name", sweep.name}, {"objective", sweep.objective_metric},
                         {"maximize", sweep.objective_maximize}, {"trials", all}}
                        .dump());
}

std::string sweep_id_of(const SweepDefinition& sweep, const std::string& digest) {
  return safe_name(sweep.name) + "-" + digest.substr(0, 12);
}

fs::path SweepFiles::trial_lock(const std::string& trial_id) const {
  return state_file.parent_path() / (state_file.stem().string() + "." + trial_id + ".lock");
}

SweepFiles sweep_files(const Project& project, const std::string& sweep_id) {
  SweepFiles files;
  files.state_file = project.sweeps_dir() / (sweep_id + ".json");
  files.summary_dir = project.sweeps_dir() / sweep_id;
  files.sweep_lock = project.sweeps_dir() / (sweep_id + ".lock");
  files.state_lock = project.sweeps_dir() / (sweep_id + ".state.lock");
  return files;
}

SweepState new_sweep_state(const SweepDefinition& sweep, const std::vector<std::unique_ptr<TrialWork>>& trials,
                           const std::string& digest, const std::string& sweep_id) {
  SweepState state;
  state.sweep_id = sweep_id;
  state.name = sweep.name;
  state.digest = digest;
  state.sweep_file = fs::absolute(sweep.file).lexically_normal().string();
  state.parent_petal_run_id = "sweep-" + sweep_id;
  state.created_ms = now_ms();
  const std::string base_run = new_run_id();
  for (const auto& t : trials) {
    TrialRecord r;
    r.id = t->trial.id;
    r.label = t->trial.label;
    r.values = t->trial.values_json();
    r.petal_run_id = base_run + "-" + t->trial.id;
    state.trials.push_back(std::move(r));
  }
  return state;
}

void check_state_matches(const SweepState& state, std::size_t trial_count, const fs::path& state_file) {
  if (state.trials.size() != trial_count) {
    throw PetalError("sweep state " + state_file.string() + " lists " + std::to_string(state.trials.size()) +
                         " trials, the sweep file expands to " + std::to_string(trial_count) +
                         "; move the state file aside to start afresh",
                     {}, kExitEnvironment);
  }
}

StageSharing plan_trials(std::vector<std::unique_ptr<TrialWork>>& trials, const StageCache& cache, DigestCache& digests,
                         bool verify) {
  StageSharing sharing;
  std::set<std::string> keys;
  for (auto& t : trials) {
    t->plan = make_plan(t->graph, cache, digests, verify);
    for (const auto& sp : t->plan.stages) keys.insert(sp.key);
    sharing.instances += t->plan.stages.size();
  }
  sharing.distinct = keys.size();
  return sharing;
}

}  // namespace petal
