#include <cstdio>

#include "pipeline/cli/commands.h"
#include "pipeline/sweep/sweep_runner.h"
#include "pipeline/util/cancel.h"
#include "pipeline/util/units.h"

namespace petal::cli {

CLI::App* setup_sweep(CLI::App& app, SweepOptions& options) {
  CLI::App* command = app.add_subcommand(
      "sweep", "run many trials of an experiment (grid, random, seeds) with shared stages, nested MLflow runs, resumable");
  command->add_option("sweep", options.file, "sweep file (TOML), e.g. experiments/flowers5_sweep.toml")
      ->required()
      ->check(CLI::ExistingFile);
  command->add_option("-j,--jobs", options.jobs, "trials at once (default: the sweep file's, else the cores; at most the cores)")
      ->check(CLI::Range(1, 256));
  command->add_flag("--fail-fast", options.fail_fast, "after a failed trial, start no new ones");
  command->add_flag("--no-tracking", options.no_tracking, "do not log the sweep to MLflow");
  command->add_flag("--list", options.list, "print the trials and what is cached; run nothing");
  command->add_flag("--no-charts", options.no_charts, "skip the comparison charts");
  command->footer("Running the same command again continues an interrupted sweep: finished trials are kept,\n"
                  "unfinished ones restart from their last committed epoch.");
  return command;
}

int run_sweep(const GlobalOptions& global, const SweepOptions& options) {
  Interrupt::install_handlers();
  const SweepDefinition sweep = load_sweep_definition(options.file);
  const Project project = Project::locate(global.state_dir.empty() ? std::nullopt
                                                                   : std::optional<std::filesystem::path>(global.state_dir));
  SweepRunOptions run_options;
  run_options.jobs = options.jobs;
  if (options.fail_fast) run_options.fail_fast = true;
  run_options.no_tracking = options.no_tracking;
  run_options.list_only = options.list;
  run_options.charts = !options.no_charts;
  const SweepResult result = petal::run_sweep(sweep, project, run_options);
  if (options.list) return kExitOk;

  std::printf("\n%s\n", to_markdown(result.summary.table).c_str());
  if (result.summary.best >= 0) {
    const TrialRecord& best = result.state.trials[static_cast<std::size_t>(result.summary.best)];
    std::printf("best: %s (%s) %s = %.4f%s%s\n", best.id.c_str(), best.label.c_str(), best.objective_key.c_str(),
                best.objective.get<double>(), best.mlflow_run_id.empty() ? "" : ", MLflow run ",
                best.mlflow_run_id.c_str());
  }
  std::printf("petal sweep: %zu stage runs over all trials, %zu distinct: sharing saved %zu executions; "
              "%zu ran now, in %s\n",
              result.stage_instances, result.distinct_stages, result.stage_instances - result.distinct_stages,
              result.executed, format_seconds(result.seconds).c_str());
  std::printf("petal sweep: comparison in %s\n", result.summary_dir.c_str());
  if (result.exit_code == kExitInterrupted) {
    std::printf("petal sweep: interrupted; run the same command again to continue (finished trials are kept)\n");
  } else if (result.exit_code != kExitOk) {
    std::printf("petal sweep: some trials did not finish; run the same command again to retry them\n");
  }
  return result.exit_code;
}

}  // namespace petal::cli
