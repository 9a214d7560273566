#pragma once
#include <cstdio>
#include <map>
#include <memory>
#include <vector>
#include <string>

#include "pipeline/config/experiment.h"
#include "pipeline/exec/executor.h"
#include "pipeline/exec/project.h"
#include "pipeline/dag/run_tracking.h"
#include "tracking/run_logger.h"

namespace petal {

// Where a run's tracking goes: the experiment's tracking.uri, else $MLFLOW_TRACKING_URI, else
// petal's embedded local server under <state>/mlflow (started on first use). Disabled by
// tracking.enabled = false or PETAL_TRACKING=off.
struct TrackingTarget {
  bool enabled = false;
  std::string uri;       // "" when the embedded server could not be started (the run is spooled)
  bool embedded = false;
  std::string problem;   // why `uri` is empty
};
TrackingTarget resolve_tracking(const Experiment& experiment, const Project& project, std::FILE* out);

// Turns one `petal run` into one MLflow run: run name, source and git tags, every resolved
// parameter as `stage.key`, each stage's cache status and key as tags, the metrics each stage
// reports (also for cached stages, so runs compare without gaps), a link to the run that built a
// reused entry, dataset inputs with digests, and the final status (FAILED with the error, KILLED
// on Ctrl-C).
// How a run is named and tagged beyond the defaults: a sweep's trials get "<sweep>-t03" and
// mlflow.parentRunId, so MLflow nests them under the sweep's parent run.
struct RunTrackerOptions {
  std::string run_name;  // "" = "<experiment>-<petal run id>"
  std::vector<mlflow::Tag> tags;
};

class RunTracker : public ExecutionObserver, public RunTracking {
 public:
  RunTracker(const Experiment& experiment, const Plan& plan, const Project& project, const TrackingTarget& target,
             const std::string& petal_run_id, const StageCache& cache, const RunTrackerOptions& options = {});
  ~RunTracker() override;

  void on_stage_end(const StagePlan& plan, const StageOutcome& outcome) override;
  // Ends the MLflow run with the status that matches the result; prints where it went. Returns
  // kExitEnvironment when the server refused the run's tracking (it is all kept in the spool),
  // else kExitOk. With the server reachable, also delivers earlier runs' abandoned spools.
  int finish(const RunResult& result, std::FILE* out);
  // For the register stage: waits until everything logged so far (the upstream stages' model
  // artifacts) reached the server, then registers and promotes (tracking/model_promotion.h).
  // Throws PetalError when the run is offline: registering needs the server.
  RegistrationResult register_model(const ModelRegistration& request) override;

  mlflow::RunLogger& logger() { return *logger_; }

 private:
  const Experiment& experiment_;
  void recover_abandoned_runs(std::FILE* out);

  const StageCache& cache_;
  std::string uri_;
  bool embedded_ = false;
  std::filesystem::path spool_dir_;
  std::shared_ptr<mlflow::Client> client_;  // for recovery; the logger has a client of its own
  std::string mlflow_experiment_;
  std::unique_ptr<mlflow::RunLogger> logger_;
  std::map<std::string, std::vector<std::string>> reused_from_;  // petal run id -> stages it built
  std::string first_error_;
};

}  // namespace petal
