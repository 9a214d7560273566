#include "pipeline/sweep/sweep_parent_run.h"

#include <cstdlib>

#include "pipeline/util/fs.h"
#include "tracking/http_client.h"

namespace petal {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

std::string distribution_text(const Distribution& d) {
  switch (d.kind) {
    case Distribution::Kind::Choice: return "choice " + json(d.choices).dump();
    case Distribution::Kind::Uniform: return "uniform [" + json(d.low).dump() + ", " + json(d.high).dump() + "]";
    case Distribution::Kind::LogUniform: return "log_uniform [" + json(d.low).dump() + ", " + json(d.high).dump() + "]";
    case Distribution::Kind::IntUniform:
      return "int_uniform [" + std::to_string(static_cast<long long>(d.low)) + ", " +
             std::to_string(static_cast<long long>(d.high)) + "]";
  }
  return "";
}

}  // namespace

ParentRun::ParentRun(const SweepDefinition& sweep, const Experiment& base, const Project& project,
                     const TrackingTarget& target, const SweepState& state, std::size_t trial_count) {
  client_ = mlflow::make_logger_client(target.uri);
  logger_ = std::make_unique<mlflow::RunLogger>(client_, project.state_dir / "spool", state.parent_petal_run_id);
  std::vector<mlflow::Tag> tags = {
      {"mlflow.source.name", fs::absolute(sweep.file).lexically_normal().string()},
      {"mlflow.source.type", "LOCAL"},
      {"petal.sweep", sweep.name},
      {"petal.sweep_id", state.sweep_id},
      {"petal.run_id", state.parent_petal_run_id},
      {"petal.role", "sweep"},
  };
  if (const char* user = std::getenv("USER"); user && *user) tags.push_back({"mlflow.user", user});
  std::string note = sweep.description.empty() ? "" : sweep.description + "\n\n";
  note += "Sweep of " + std::to_string(trial_count) + " trials over " + base.name + " (" + sweep.experiment.filename().string() +
          "); each trial is a nested run.";
  tags.push_back({"mlflow.note.content", note});
  const std::string experiment = base.tracking.experiment.empty() ? base.name : base.tracking.experiment;
  logger_->start_run(experiment, sweep.name, tags, now_ms(), target.embedded ? "" : strip_credentials(target.uri));
  logger_->log_param("sweep.base_experiment", sweep.experiment.filename().string());
  logger_->log_param("sweep.trials", std::to_string(trial_count));
  logger_->log_param("sweep.objective", sweep.objective_metric + (sweep.objective_maximize ? " (max)" : " (min)"));
  for (const auto& axis : sweep.grid) logger_->log_param("sweep.grid." + axis.param.text(), json(axis.values).dump().substr(0, 6000));
  for (const auto& d : sweep.random) logger_->log_param("sweep.random." + d.param.text(), distribution_text(d));
  if (sweep.random_trials > 0) logger_->log_param("sweep.random.draws", std::to_string(sweep.random_trials));
  if (!sweep.seeds.empty()) logger_->log_param("sweep.seeds", json(sweep.seeds).dump());
  for (const auto& f : sweep.fixed) logger_->log_param("sweep.set." + f.param.text(), f.value.is_string() ? f.value.get<std::string>() : f.value.dump());
  logger_->log_artifact(sweep.file, "sweep");
  logger_->flush();
}

}  // namespace petal
