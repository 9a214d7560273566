#include <cstdio>
#include <cstdlib>
#include <sstream>

#include "pipeline/cli/commands.h"
#include "pipeline/config/experiment.h"
#include "pipeline/dag/stage_registry.h"
#include "pipeline/exec/project.h"
#include "pipeline/util/error.h"
#include "tracking/http_client.h"
#include "tracking/local_server.h"
#include "tracking/mlflow_client.h"
#include "tracking/run_comparison.h"

namespace petal::cli {

namespace fs = std::filesystem;

CLI::App* setup_compare(CLI::App& app, CompareOptions& options) {
  CLI::App* command = app.add_subcommand("compare", "a table of an experiment's MLflow runs: differing params, key metrics");
  command->add_option("experiment", options.experiment,
                      "an MLflow experiment name, or an experiment file (its tracking experiment is used)")
      ->required();
  command->add_option("--filter", options.filter,
                      "MLflow search filter, e.g. \"params.`train.model` = 'resnet18'\" or \"metrics.`evaluate.test_accuracy` > 0.8\"");
  command->add_option("--sort", options.sort, "metric to sort by, highest first (default: the first metric column)");
  command->add_flag("--ascending", options.ascending, "sort lowest first (for losses)");
  command->add_option("--top", options.top, "show only the first N runs")->check(CLI::PositiveNumber);
  command->add_option("--metrics", options.metrics, "metric columns, comma-separated (default: accuracy/F1 metrics present)")
      ->delimiter(',');
  command->add_option("--params", options.params, "param columns, comma-separated (default: those that differ)")->delimiter(',');
  command->add_option("--sweep", options.sweep, "only the trials of this sweep (by its name)");
  command->add_flag("--include-parents", options.include_parents, "also list sweeps' parent runs");
  command->add_flag("--csv", options.csv, "write CSV instead of an aligned table");
  command->add_option("--tracking-uri", options.tracking_uri,
                      "MLflow server (default: $MLFLOW_TRACKING_URI, else petal's local server)");
  return command;
}

int run_compare(const GlobalOptions& global, const CompareOptions& options) {
  std::string experiment_name = options.experiment;
  std::string uri = options.tracking_uri;
  if (options.experiment.size() > 5 && options.experiment.substr(options.experiment.size() - 5) == ".toml") {
    if (!fs::exists(options.experiment)) throw PetalError("experiment file " + options.experiment + " does not exist");
    const Experiment experiment = load_experiment(options.experiment, builtin_registry());
    experiment_name = experiment.tracking.experiment.empty() ? experiment.name : experiment.tracking.experiment;
    if (uri.empty()) uri = experiment.tracking.uri;
  }
  if (uri.empty()) {
    if (const char* env = std::getenv("MLFLOW_TRACKING_URI"); env && *env) uri = env;
  }
  if (uri.empty()) {
    const Project project = Project::locate(global.state_dir.empty() ? std::nullopt : std::optional<fs::path>(global.state_dir));
    uri = LocalMlflowServer(project.state_dir / "mlflow").ensure_running();
  }
  mlflow::Client client(uri);
  const auto experiment = client.get_experiment_by_name(experiment_name);
  if (!experiment) {
    throw PetalError("MLflow at " + redact_url(uri) + " has no experiment named '" + experiment_name +
                         "'; give the name shown in the MLflow UI, or the experiment file you ran",
                     {}, kExitUsage);
  }
  std::string filter = options.filter;
  const auto add = [&filter](const std::string& clause) { filter = filter.empty() ? clause : filter + " and " + clause; };
  if (!options.sweep.empty()) add("tags.`petal.sweep` = '" + options.sweep + "'");
  std::vector<mlflow::Run> runs = client.search_all_runs({experiment->experiment_id}, filter);
  std::size_t parents = 0;
  if (!options.include_parents) {
    std::vector<mlflow::Run> kept;
    for (auto& r : runs) {
      const auto role = r.tags.find("petal.role");
      if (role != r.tags.end() && role->second == "sweep") {
        ++parents;
        continue;
      }
      kept.push_back(std::move(r));
    }
    runs = std::move(kept);
  }
  mlflow::ComparisonOptions compare;
  compare.sort_metric = options.sort;
  compare.ascending = options.ascending;
  compare.top = options.top;
  compare.metrics = options.metrics;
  compare.params = options.params;
  const ComparisonTable table = mlflow::compare_runs(std::move(runs), compare);
  if (options.csv) {
    std::fputs(to_csv(table).c_str(), stdout);
    return kExitOk;
  }
  std::printf("%s: %zu run%s%s\n", experiment_name.c_str(), table.rows.size(), table.rows.size() == 1 ? "" : "s",
              parents ? (" (" + std::to_string(parents) + " sweep parent run" + (parents == 1 ? "" : "s") +
                         " not listed: --include-parents)").c_str()
                      : "");
  std::fputs(mlflow::to_aligned_text(table).c_str(), stdout);
  return kExitOk;
}

}  // namespace petal::cli
