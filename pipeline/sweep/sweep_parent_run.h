#pragma once
// The sweep's own MLflow run: the definition as params, the sweep file as an artifact, and at the
// end the comparison (sweep_runner.cpp). Its local id is fixed by the sweep, so a resumed sweep's
// spool finds the same MLflow run again and the trials stay nested under it.
#include <memory>
#include <string>

#include "pipeline/config/experiment.h"
#include "pipeline/exec/project.h"
#include "pipeline/sweep/sweep_definition.h"
#include "pipeline/sweep/sweep_state.h"
#include "tracking/run_logger.h"
#include "tracking/run_tracker.h"

namespace petal {

class ParentRun {
 public:
  // Starts (or finds again) the run and waits until it exists on the server: children need its id.
  ParentRun(const SweepDefinition& sweep, const Experiment& base, const Project& project, const TrackingTarget& target,
            const SweepState& state, std::size_t trial_count);

  std::string run_id() const { return logger_->run_id(); }  // "" while the server is unreachable
  mlflow::RunLogger& logger() { return *logger_; }
  void finish(const std::string& status) { logger_->end_run(status); }

 private:
  std::shared_ptr<mlflow::Client> client_;
  std::unique_ptr<mlflow::RunLogger> logger_;
};

}  // namespace petal
