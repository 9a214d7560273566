#include "pipeline/sweep/sweep_summarizer.h"

#include <chrono>
#include <map>

#include "pipeline/cache/digest_cache.h"
#include "pipeline/cache/stage_cache.h"
#include "pipeline/exec/planner.h"
#include "pipeline/sweep/shared_sweep_state.h"
#include "pipeline/sweep/sweep_comparison.h"
#include "pipeline/sweep/sweep_parent_run.h"
#include "pipeline/sweep/sweep_trials.h"
#include "pipeline/sweep/trial_attempt.h"
#include "pipeline/util/file_lock.h"
#include "tracking/http_client.h"
#include "tracking/run_tracker.h"

namespace petal {

namespace fs = std::filesystem;

SweepResult summarize_sweep(const SweepDefinition& sweep, const Project& project, const SweepRunOptions& options) {
  const auto start = std::chrono::steady_clock::now();
  std::FILE* out = options.out;
  const StageRegistry& registry = options.registry ? *options.registry : builtin_registry();
  std::vector<std::unique_ptr<TrialWork>> trials = load_trials(sweep, registry);
  const std::string digest = sweep_digest(sweep, trials);
  const std::string sweep_id = sweep_id_of(sweep, digest);
  const SweepFiles files = sweep_files(project, sweep_id);
  SweepResult result;
  result.state_file = files.state_file;
  result.summary_dir = files.summary_dir;

  fs::create_directories(project.sweeps_dir());
  // Exclusive, so that no trial process changes the state while it is summarized (and a
  // summary of trials still running is refused instead of being silently partial).
  const FileLock lock = FileLock::try_acquire(files.sweep_lock);
  if (!lock.held()) {
    throw PetalError("sweep " + sweep.name + " has trials running in other petal processes (they hold " +
                         files.sweep_lock.string() + "); summarize it once they have ended",
                     {}, kExitEnvironment);
  }
  std::optional<SweepState> loaded = SweepState::load(files.state_file);
  if (!loaded) {
    throw PetalError("sweep " + sweep.name + " has no state yet (" + files.state_file.string() +
                     "): no trial of it has run with this state folder; run its trials first (`petal sweep " +
                     sweep.file.string() + " --trial-index N`, or the whole sweep without options)");
  }
  SweepState state = std::move(*loaded);
  check_state_matches(state, trials.size(), files.state_file);

  StageCache cache(project.cache_dir());
  DigestCache digests(project.digest_store());
  const StageSharing sharing = plan_trials(trials, cache, digests, options.verify);
  result.stage_instances = sharing.instances;
  result.distinct_stages = sharing.distinct;

  std::map<TrialStatus, std::size_t> counts;
  for (const auto& r : state.trials) ++counts[r.status];
  std::fprintf(out, "petal sweep: %s — summarizing %zu trials from %s: %zu finished", sweep.name.c_str(), trials.size(),
               files.state_file.c_str(), counts[TrialStatus::Finished]);
  for (TrialStatus status : {TrialStatus::Pruned, TrialStatus::Failed, TrialStatus::Interrupted, TrialStatus::Pending}) {
    if (counts[status] > 0) std::fprintf(out, ", %zu %s", counts[status], to_string(status));
  }
  // Nobody holds a trial's lock now, so a trial still marked running lost its process mid-attempt.
  if (counts[TrialStatus::Running] > 0) std::fprintf(out, ", %zu stopped while running", counts[TrialStatus::Running]);
  std::fprintf(out, "\n");

  std::unique_ptr<ParentRun> parent;
  TrackingTarget target;
  if (!options.no_tracking) {
    target = resolve_tracking(trials.front()->experiment, project, out);
    if (target.enabled) {
      if (!target.problem.empty()) std::fprintf(out, "petal: warning: %s\n", target.problem.c_str());
      // Finds the run the trials made (by its local id), or makes it when none could.
      parent = std::make_unique<ParentRun>(sweep, trials.front()->experiment, project, target, state, trials.size());
      if (state.parent_mlflow_run_id.empty() && !parent->run_id().empty()) {
        state = update_sweep_state(files, [&] { return state; },
                                   [&](SweepState& s) { s.parent_mlflow_run_id = parent->run_id(); });
      }
      if (parent->run_id().empty()) {
        std::fprintf(out, "petal: warning: the sweep's parent run is spooled (MLflow unreachable); `petal sync` sends it\n");
      } else {
        std::fprintf(out, "petal sweep: MLflow parent run %s at %s\n", parent->run_id().c_str(), redact_url(target.uri).c_str());
      }
    }
  }

  bool all_final = true;
  for (const auto& r : state.trials) all_final = all_final && is_final(r.status);
  result.exit_code = all_final ? kExitOk : kExitStageFailed;
  result.summary = write_comparison(state, sweep, swept_parameters(trials), result.summary_dir, options.charts, out);
  if (parent) {
    log_comparison(*parent, state, sweep, result.summary, result.summary_dir, result.stage_instances - result.distinct_stages);
    parent->finish(all_final ? "FINISHED" : "FAILED");
  }
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  result.state = std::move(state);
  return result;
}

}  // namespace petal
