#pragma once
// One attempt at one trial: its pipeline run with a child MLflow run (nested under the sweep's
// parent), and what the attempt leaves in the trial's record. Used by the whole-sweep runner
// (sweep_runner.h), which runs many trials in threads, and by the one-trial runner
// (sweep_trial_runner.h), which runs one trial in a process of its own.
#include <atomic>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "pipeline/cache/run_log.h"
#include "pipeline/cache/stage_cache.h"
#include "pipeline/exec/executor.h"
#include "pipeline/exec/project.h"
#include "pipeline/sweep/sweep_definition.h"
#include "pipeline/sweep/sweep_state.h"
#include "pipeline/sweep/sweep_trials.h"
#include "pipeline/sweep/trial_progress.h"
#include "tracking/run_tracker.h"

namespace petal {

// What every attempt of a sweep shares.
struct TrialAttemptContext {
  const SweepDefinition* sweep = nullptr;
  std::string sweep_id;
  const Project* project = nullptr;
  const StageCache* cache = nullptr;
  RunLog* log = nullptr;
  const TrackingTarget* tracking = nullptr;  // null: the trial is not tracked
  std::string parent_mlflow_run_id;          // "" while the parent run is unknown (offline)
  int threads_per_stage = 1;
};

struct TrialAttempt {
  RunResult run;
  bool pruned = false;                                  // stopped by the pruning rule
  std::vector<std::pair<int, double>> pruned_history;   // the pruning stage's checkpointed curve, when pruned
  std::string tracking_lines;                           // what the child run's tracker printed
  std::string mlflow_run_id;                            // "" when untracked or offline
};

// Runs the trial's plan as run `petal_run_id`. `stop` turning true stops it (the pruning rule);
// `prune_reason` is asked for the reason once it has; `running` (may be null) is true while the
// plan executes.
TrialAttempt attempt_trial(TrialWork& work, const std::string& petal_run_id, const TrialAttemptContext& context,
                           ExecutionObserver& progress, const std::function<bool()>& stop,
                           const std::function<std::string()>& prune_reason, std::atomic<bool>* running);

// Writes the attempt into the trial's record: time, stage counts, MLflow run, metrics and curves,
// the objective, the first error, and the status (pruned trials keep their reason as the error).
void record_attempt(const TrialWork& work, const TrialAttempt& attempt, const SweepDefinition& sweep,
                    const std::string& prune_reason, TrialRecord& record);

// "finished in 1.2s: fit.val_accuracy = 0.9000", with the error when there is one.
std::string attempt_result_line(const TrialRecord& record, const SweepDefinition& sweep, double seconds);

// The tracker's warnings (not its "petal: MLflow run ..." line), each as one line of the trial.
void say_tracking_warnings(TrialProgress& progress, const std::string& tracking_lines);

// Whether a trial needs no more attempts.
inline bool is_final(TrialStatus status) { return status == TrialStatus::Finished || status == TrialStatus::Pruned; }

}  // namespace petal
