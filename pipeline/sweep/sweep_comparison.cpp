#include "pipeline/sweep/sweep_comparison.h"

#include "pipeline/exec/worker_client.h"
#include "pipeline/util/error.h"
#include "pipeline/util/fs.h"
#include "pipeline/util/subprocess.h"

namespace petal {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

void draw_charts(const json& request, const fs::path& dir, std::FILE* out) {
  try {
    const fs::path request_file = dir / "charts_request.json";
    write_file_atomically(request_file, request.dump(1));
    SubprocessSpec spec;
    spec.argv = {worker_executable("petal-data-worker").string(), "sweep-charts", request_file.string(), dir.string()};
    spec.output_file = dir / "charts.log";
    const SubprocessResult result = run_subprocess(spec, nullptr);
    if (result.signal != 0 || result.exit_code != 0) {
      std::fprintf(out, "petal: warning: the comparison charts were not drawn (%s; see %s)\n", result.describe().c_str(),
                   spec.output_file.c_str());
    }
  } catch (const PetalError& e) {
    std::fprintf(out, "petal: warning: the comparison charts were not drawn: %s\n", e.what());
  }
}

}  // namespace

std::vector<std::string> swept_parameters(const std::vector<std::unique_ptr<TrialWork>>& trials) {
  std::vector<std::string> swept;
  if (!trials.empty()) {
    for (const auto& v : trials.front()->trial.values) swept.push_back(v.param.text());
  }
  return swept;
}

SweepSummary write_comparison(const SweepState& state, const SweepDefinition& sweep, const std::vector<std::string>& swept,
                              const fs::path& summary_dir, bool charts, std::FILE* out) {
  SweepSummary summary = summarize(state, sweep, swept);
  fs::create_directories(summary_dir);
  write_file_atomically(summary_dir / "comparison.csv", to_csv(summary.table));
  write_file_atomically(summary_dir / "comparison.md", to_markdown(summary.table));
  write_file_atomically(summary_dir / "summary.json", summary.to_json(state).dump(1) + "\n");
  if (charts) draw_charts(chart_request(state, sweep, summary), summary_dir, out);
  return summary;
}

void log_comparison(ParentRun& parent, const SweepState& state, const SweepDefinition& sweep, const SweepSummary& summary,
                    const fs::path& summary_dir, std::size_t shared_stage_runs) {
  auto& logger = parent.logger();
  for (const char* file : {"comparison.csv", "comparison.md", "summary.json", "objective.png", "validation_curves.png"}) {
    if (fs::exists(summary_dir / file)) logger.log_artifact(summary_dir / file, "summary");
  }
  std::size_t finished = 0, failed_count = 0, pruned_count = 0;
  for (const auto& r : state.trials) {
    finished += r.status == TrialStatus::Finished ? 1 : 0;
    failed_count += r.status == TrialStatus::Failed ? 1 : 0;
    pruned_count += r.status == TrialStatus::Pruned ? 1 : 0;
  }
  logger.log_metric("trials_finished", static_cast<double>(finished));
  logger.log_metric("trials_failed", static_cast<double>(failed_count));
  if (sweep.pruning.enabled) logger.log_metric("trials_pruned", static_cast<double>(pruned_count));
  logger.log_metric("stage_runs_shared", static_cast<double>(shared_stage_runs));
  if (summary.best >= 0) {
    const TrialRecord& best = state.trials[static_cast<std::size_t>(summary.best)];
    logger.set_tag("petal.best_trial", best.id + " " + best.label);
    if (!best.mlflow_run_id.empty()) logger.set_tag("petal.best_run_id", best.mlflow_run_id);
    logger.log_metric("best." + best.objective_key, best.objective.get<double>());
    for (const auto& [key, value] : best.metrics.items()) {
      if (value.is_number() && key != best.objective_key) logger.log_metric("best." + key, value.get<double>());
    }
  }
}

}  // namespace petal
