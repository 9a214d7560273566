#include "pipeline/sweep/sweep_trial_runner.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <thread>

#include "pipeline/cache/digest_cache.h"
#include "pipeline/cache/run_log.h"
#include "pipeline/cache/stage_cache.h"
#include "pipeline/exec/planner.h"
#include "pipeline/exec/worker_client.h"
#include "pipeline/sweep/pruning.h"
#include "pipeline/sweep/shared_sweep_state.h"
#include "pipeline/sweep/sweep_parent_run.h"
#include "pipeline/sweep/sweep_trials.h"
#include "pipeline/sweep/trial_attempt.h"
#include "pipeline/sweep/trial_progress.h"
#include "pipeline/util/cancel.h"
#include "pipeline/util/file_lock.h"
#include "tracking/http_client.h"
#include "tracking/run_tracker.h"

namespace petal {

namespace fs = std::filesystem;

namespace {

// Watches this trial's epoch checkpoints four times a second and asks the pruning rule about them.
// The rungs also hold the other trials' curves as the state file records them (finished, pruned or
// failed attempts), re-read every two seconds: across processes that is what "seen so far" means.
class PruningWatch {
 public:
  PruningWatch(const SweepDefinition& sweep, const SweepFiles& files, const SweepState& state, const TrialWork& work,
               const StageCache& cache, TrialProgress& progress)
      : sweep_(sweep), files_(files), work_(work), cache_(cache), progress_(progress), halving_(sweep.pruning) {
    observe_recorded(state);
    thread_ = std::thread([this] { watch(); });
  }
  ~PruningWatch() {
    done_ = true;
    thread_.join();
  }
  bool stop_requested() const { return prune_; }
  std::string reason() const {
    std::lock_guard<std::mutex> guard(mutex_);
    return reason_;
  }

 private:
  void observe_recorded(const SweepState& state) {
    for (const auto& r : state.trials) {
      if (r.id != work_.trial.id) halving_.observe(r.id, curve_history(r.curves, sweep_.pruning.stage, sweep_.pruning.metric));
    }
  }
  void watch() {
    for (int tick = 1; !done_ && !prune_; ++tick) {
      if (tick % 40 == 0) {
        try {
          if (const auto state = SweepState::load(files_.state_file)) observe_recorded(*state);
        } catch (const std::exception&) {
          // Unreadable for a moment (a shared file system): the next look will do.
        }
      }
      if (tick % 5 == 0) check_own_checkpoints();
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
  void check_own_checkpoints() {
    for (const auto& sp : work_.plan.stages) {
      if (sp.node->name() != sweep_.pruning.stage) continue;
      const std::string why =
          halving_.observe(work_.trial.id, checkpoint_history(cache_.resume_dir(sp.key), sweep_.pruning.metric));
      if (why.empty()) continue;
      {
        std::lock_guard<std::mutex> guard(mutex_);
        reason_ = why;
      }
      prune_ = true;
      progress_.say(why + ": stopping it");
    }
  }

  const SweepDefinition& sweep_;
  const SweepFiles& files_;
  const TrialWork& work_;
  const StageCache& cache_;
  TrialProgress& progress_;
  SuccessiveHalving halving_;
  mutable std::mutex mutex_;
  std::string reason_;
  std::atomic<bool> prune_{false};
  std::atomic<bool> done_{false};
  std::thread thread_;
};

int exit_code_of(TrialStatus status) {
  switch (status) {
    case TrialStatus::Finished:
    case TrialStatus::Pruned: return kExitOk;  // pruning is a result, not a failure to retry
    case TrialStatus::Interrupted: return kExitInterrupted;
    default: return kExitStageFailed;
  }
}

}  // namespace

SweepTrialResult run_sweep_trial(const SweepDefinition& sweep, const Project& project, int trial_index,
                                 const SweepRunOptions& options) {
  std::FILE* out = options.out;
  const StageRegistry& registry = options.registry ? *options.registry : builtin_registry();
  std::vector<std::unique_ptr<TrialWork>> trials = load_trials(sweep, registry);
  if (trial_index < 0 || static_cast<std::size_t>(trial_index) >= trials.size()) {
    throw PetalError("--trial-index " + std::to_string(trial_index) + " is out of range: sweep " + sweep.name + " (" +
                     sweep.file.string() + ") has " + std::to_string(trials.size()) + " trial" +
                     (trials.size() == 1 ? "" : "s") + ", indexes 0 to " + std::to_string(trials.size() - 1) +
                     "; `petal sweep " + sweep.file.string() + " --list` lists them");
  }
  const std::string digest = sweep_digest(sweep, trials);
  SweepTrialResult result;
  result.sweep_id = sweep_id_of(sweep, digest);
  result.trials = trials.size();
  const SweepFiles files = sweep_files(project, result.sweep_id);
  result.state_file = files.state_file;
  TrialWork& work = *trials[static_cast<std::size_t>(trial_index)];
  const std::string trial_id = work.trial.id;

  fs::create_directories(project.sweeps_dir());
  const FileLock sweep_lock = FileLock::try_acquire_shared(files.sweep_lock);
  if (!sweep_lock.held()) {
    throw PetalError("sweep " + sweep.name + " is being run whole or summarized by another petal process (it holds " +
                         files.sweep_lock.string() + "); run single trials only when that has ended",
                     {}, kExitEnvironment);
  }
  const FileLock trial_lock = FileLock::try_acquire(files.trial_lock(trial_id));
  if (!trial_lock.held()) {
    throw PetalError("trial " + trial_id + " of sweep " + sweep.name + " is already running in another petal process (it holds " +
                         files.trial_lock(trial_id).string() + "); wait for it, or stop it first",
                     {}, kExitEnvironment);
  }

  StageCache cache(project.cache_dir());
  DigestCache digests(project.digest_store());
  RunLog log(project.run_log());
  work.plan = make_plan(work.graph, cache, digests, options.verify);

  TrackingTarget target;
  if (!options.no_tracking) {
    target = resolve_tracking(work.experiment, project, out);
    if (target.enabled && !target.problem.empty()) std::fprintf(out, "petal: warning: %s\n", target.problem.c_str());
  }
  // Join the sweep: the state (created by the first trial process to arrive), the parent run
  // (likewise), and this trial marked running — all in one read-modify-write.
  bool final_before = false, resuming = false, created_parent = false;
  const SweepState state = update_sweep_state(
      files, [&] { return new_sweep_state(sweep, trials, digest, result.sweep_id); },
      [&](SweepState& s) {
        check_state_matches(s, trials.size(), files.state_file);
        TrialRecord* found = s.find(trial_id);
        if (!found) {
          throw PetalError("sweep state " + files.state_file.string() + " has no trial " + trial_id +
                               "; move it aside to start the sweep afresh (finished stages stay cached)",
                           {}, kExitEnvironment);
        }
        TrialRecord& record = *found;
        final_before = is_final(record.status);
        if (final_before) return;
        if (target.enabled && s.parent_mlflow_run_id.empty()) {
          // Destroyed before the lock is released: the parent's spool has one writer at a time.
          ParentRun parent(sweep, trials.front()->experiment, project, target, s, trials.size());
          s.parent_mlflow_run_id = parent.run_id();
          created_parent = !s.parent_mlflow_run_id.empty();
        }
        resuming = record.attempts > 0;
        record.status = TrialStatus::Running;
        ++record.attempts;
      });
  const TrialRecord& before = *std::find_if(state.trials.begin(), state.trials.end(),
                                            [&](const TrialRecord& r) { return r.id == trial_id; });
  std::fprintf(out, "petal sweep: %s — trial %s (index %d of %zu): %s; state %s\n", sweep.name.c_str(), trial_id.c_str(),
               trial_index, trials.size(), work.trial.label.c_str(), files.state_file.c_str());
  if (final_before) {
    std::fprintf(out, "petal sweep: trial %s was %s before; nothing to run\n", trial_id.c_str(), to_string(before.status));
    result.final_before = true;
    result.record = before;
    return result;
  }
  if (target.enabled) {
    if (state.parent_mlflow_run_id.empty()) {
      std::fprintf(out, "petal: warning: the sweep's parent run is spooled (MLflow unreachable); this trial is logged "
                        "without the parent link\n");
    } else {
      std::fprintf(out, "petal sweep: MLflow parent run %s (%s) at %s\n", state.parent_mlflow_run_id.c_str(),
                   created_parent ? "created by this trial" : "found in the state", redact_url(target.uri).c_str());
    }
  }
  std::fflush(out);

  std::mutex print_mutex;
  std::map<std::string, std::string> trial_of_run;
  for (const auto& r : state.trials) trial_of_run[r.petal_run_id] = r.id;
  TrialProgress progress(out, print_mutex, trial_id, trial_of_run);
  progress.say(std::string(resuming ? "resuming" : "start") + ": " + work.trial.label + " (" +
               std::to_string(work.plan.stages.size()) + " stages, " + std::to_string(work.plan.cached_count()) + " cached)");

  TrialAttemptContext context;
  context.sweep = &sweep;
  context.sweep_id = result.sweep_id;
  context.project = &project;
  context.cache = &cache;
  context.log = &log;
  context.tracking = target.enabled ? &target : nullptr;
  context.parent_mlflow_run_id = state.parent_mlflow_run_id;
  context.threads_per_stage = std::max(1, worker_thread_budget());

  TrialAttempt attempt;
  std::string prune_reason;
  try {
    std::unique_ptr<PruningWatch> watch;
    if (sweep.pruning.enabled) watch = std::make_unique<PruningWatch>(sweep, files, state, work, cache, progress);
    const auto stop = [&] { return watch && watch->stop_requested(); };
    const auto reason = [&] { return watch ? watch->reason() : std::string(); };
    attempt = attempt_trial(work, before.petal_run_id, context, progress, stop, reason, nullptr);
    prune_reason = reason();
  } catch (const std::exception& e) {
    // Whatever stopped the attempt is this trial's failure, recorded like the whole-sweep runner does.
    update_trial_record(files, trial_id, [&](TrialRecord& record) {
      record.status = TrialStatus::Failed;
      record.error = e.what();
    });
    throw;
  }
  const SweepState after = update_trial_record(files, trial_id, [&](TrialRecord& record) {
    record_attempt(work, attempt, sweep, prune_reason, record);
  });
  result.record = *std::find_if(after.trials.begin(), after.trials.end(), [&](const TrialRecord& r) { return r.id == trial_id; });
  progress.say(attempt_result_line(result.record, sweep, attempt.run.seconds));
  say_tracking_warnings(progress, attempt.tracking_lines);
  result.exit_code = Interrupt::requested() ? kExitInterrupted : exit_code_of(result.record.status);
  return result;
}

}  // namespace petal
