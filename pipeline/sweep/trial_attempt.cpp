#include "pipeline/sweep/trial_attempt.h"

#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>

#include "pipeline/sweep/pruning.h"
#include "pipeline/sweep/sweep_summary.h"
#include "pipeline/util/cancel.h"
#include "pipeline/util/units.h"

namespace petal {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// Final metrics ("stage.metric") and per-epoch curves of a trial's stages, in graph order.
void collect_results(const TrialWork& work, const RunResult& result, const SweepDefinition& sweep, TrialRecord& record) {
  record.metrics = json::object();
  record.curves = json::array();
  std::vector<std::string> order;
  for (const StageNode* node : work.graph.order()) {
    const StageOutcome& o = result.outcomes[static_cast<std::size_t>(node->index)];
    if (o.status != StageStatus::Ran && o.status != StageStatus::Cached) continue;
    order.push_back(node->name());
    for (const auto& [name, value] : o.report.metrics.items()) {
      if (value.is_number()) record.metrics[node->name() + "." + name] = value;
    }
    std::map<std::string, json> series;
    std::vector<std::string> series_order;
    for (const auto& point : o.report.series) {
      if (!series.count(point.name)) series_order.push_back(point.name), series[point.name] = json::array();
      series[point.name].push_back({point.step, point.value});
    }
    for (const auto& name : series_order) record.curves.push_back({{"stage", node->name()}, {"name", name}, {"points", series[name]}});
  }
  record.objective_key = find_objective_key(sweep.objective_metric, order, record.metrics);
  record.objective = record.objective_key.empty() ? json(nullptr) : record.metrics.at(record.objective_key);
}

std::string first_error(const TrialWork& work, const RunResult& result) {
  for (const StageNode* node : work.graph.order()) {
    const StageOutcome& o = result.outcomes[static_cast<std::size_t>(node->index)];
    if (o.status == StageStatus::Failed) return node->name() + ": " + o.error;
  }
  return "";
}

std::unique_ptr<RunTracker> child_run_tracker(TrialWork& work, const std::string& petal_run_id,
                                              const TrialAttemptContext& context) {
  RunTrackerOptions options;
  options.run_name = work.trial.id + " " + work.trial.label;
  if (options.run_name.size() > 200) options.run_name = options.run_name.substr(0, 197) + "...";
  options.tags = {{"petal.sweep", context.sweep->name},
                  {"petal.sweep_id", context.sweep_id},
                  {"petal.trial", work.trial.id},
                  {"petal.trial.label", work.trial.label.substr(0, 5000)},
                  {"petal.trial.values", work.trial.values_json().dump().substr(0, 5000)}};
  if (!context.parent_mlflow_run_id.empty()) options.tags.push_back({"mlflow.parentRunId", context.parent_mlflow_run_id});
  return std::make_unique<RunTracker>(work.experiment, work.plan, *context.project, *context.tracking, petal_run_id,
                                      *context.cache, options);
}

}  // namespace

TrialAttempt attempt_trial(TrialWork& work, const std::string& petal_run_id, const TrialAttemptContext& context,
                           ExecutionObserver& progress, const std::function<bool()>& stop,
                           const std::function<std::string()>& prune_reason, std::atomic<bool>* running) {
  const SweepDefinition& sweep = *context.sweep;
  std::unique_ptr<RunTracker> tracker;
  if (context.tracking) tracker = child_run_tracker(work, petal_run_id, context);
  ObserverList observers;
  observers.add(&progress);
  observers.add(tracker.get());
  ExecuteOptions execute_options;
  execute_options.jobs = 1;
  execute_options.run_id = petal_run_id;
  execute_options.experiment = work.experiment.name;
  execute_options.base_dir = fs::absolute(sweep.experiment).parent_path();
  execute_options.tracking = tracker.get();
  execute_options.stage_threads = context.threads_per_stage;
  execute_options.stop = stop;
  TrialAttempt attempt;
  if (running) *running = true;
  attempt.run = execute(work.plan, *context.cache, *context.log, observers, execute_options);
  if (running) *running = false;
  attempt.pruned = stop && stop();
  if (attempt.pruned) {
    for (const auto& sp : work.plan.stages) {
      if (sp.node->name() == sweep.pruning.stage) {
        attempt.pruned_history = checkpoint_history(context.cache->resume_dir(sp.key), sweep.pruning.metric);
      }
    }
    if (tracker) {
      tracker->logger().set_tag("petal.pruned", prune_reason());
      for (const auto& [epoch, value] : attempt.pruned_history) {
        tracker->logger().log_metric(sweep.pruning.stage + "." + sweep.pruning.metric, value, epoch);
      }
    }
  }
  if (tracker) {
    char* buffer = nullptr;
    std::size_t size = 0;
    if (std::FILE* memory = open_memstream(&buffer, &size)) {
      tracker->finish(attempt.run, memory);
      std::fclose(memory);
      attempt.tracking_lines.assign(buffer, size);
      std::free(buffer);
    }
    attempt.mlflow_run_id = tracker->logger().run_id();
  }
  return attempt;
}

void record_attempt(const TrialWork& work, const TrialAttempt& attempt, const SweepDefinition& sweep,
                    const std::string& prune_reason, TrialRecord& record) {
  const RunResult& run = attempt.run;
  record.seconds = run.seconds;
  record.stages_ran = static_cast<int>(run.count(StageStatus::Ran));
  record.stages_cached = static_cast<int>(run.count(StageStatus::Cached));
  if (!attempt.mlflow_run_id.empty()) record.mlflow_run_id = attempt.mlflow_run_id;
  collect_results(work, run, sweep, record);
  record.error = first_error(work, run);
  record.status = run.exit_code == kExitOk ? TrialStatus::Finished
                  : attempt.pruned && !Interrupt::requested() ? TrialStatus::Pruned
                  : run.exit_code == kExitInterrupted ? TrialStatus::Interrupted : TrialStatus::Failed;
  if (record.status == TrialStatus::Pruned) {
    record.error = prune_reason;
    json points = json::array();
    for (const auto& [epoch, value] : attempt.pruned_history) points.push_back({epoch, value});
    record.curves.push_back({{"stage", sweep.pruning.stage}, {"name", sweep.pruning.metric}, {"points", points}});
  }
}

std::string attempt_result_line(const TrialRecord& record, const SweepDefinition& sweep, double seconds) {
  std::string line = std::string(to_string(record.status)) + " in " + format_seconds(seconds);
  if (record.objective.is_number()) {
    char value[64];
    std::snprintf(value, sizeof value, "%.4f", record.objective.get<double>());
    line += ": " + record.objective_key + " = " + value;
  } else if (record.status == TrialStatus::Finished) {
    line += " (no metric '" + sweep.objective_metric + "' reported)";
  }
  if (!record.error.empty()) line += " — " + record.error;
  return line;
}

void say_tracking_warnings(TrialProgress& progress, const std::string& tracking_lines) {
  for (std::size_t from = 0; from < tracking_lines.size();) {
    const std::size_t end = tracking_lines.find('\n', from);
    const std::string text = tracking_lines.substr(from, end == std::string::npos ? std::string::npos : end - from);
    if (!text.empty() && text.rfind("petal: MLflow run", 0) != 0) progress.say(text);  // warnings only
    from = end == std::string::npos ? tracking_lines.size() : end + 1;
  }
}

}  // namespace petal
