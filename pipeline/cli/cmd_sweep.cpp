#include <cstdio>

#include "pipeline/cli/commands.h"
#include "pipeline/sweep/sweep_runner.h"
#include "pipeline/sweep/sweep_summarizer.h"
#include "pipeline/sweep/sweep_trial_runner.h"
#include "pipeline/util/cancel.h"
#include "pipeline/util/units.h"

namespace petal::cli {

namespace {

void add_emit_options(CLI::App& command, SweepEmitOptions& emit, CLI::Option* emit_option) {
  const auto with_emit = [&](CLI::Option* option) { option->needs(emit_option)->group("Cluster jobs (--emit)"); };
  with_emit(command.add_option("-o,--output", emit.output, "write the job file here (default: stdout)")->type_name("PATH"));
  with_emit(command.add_option("--cpus", emit.cpus, "CPU cores per trial (default 4; also $PETAL_THREADS)")
                ->check(CLI::Range(1, 1024)));
  with_emit(command.add_option("--memory", emit.memory_gib, "memory per trial in GiB (default 8)")->check(CLI::Range(1, 65536)));
  with_emit(command.add_option("--gpus", emit.gpus, "GPUs per trial (default 0)")->check(CLI::Range(0, 64)));
  with_emit(command.add_option("--image", emit.image, "kubernetes: the container image with petal (default petal:latest)"));
  with_emit(command.add_option("--image-petal", emit.image_petal,
                               "kubernetes: petal in the image, relative to its working directory (default build/petal)"));
  with_emit(command.add_option("--pvc", emit.state_claim,
                               "kubernetes: the ReadWriteMany PersistentVolumeClaim holding petal's state (default petal-state)"));
  with_emit(command.add_option("--state-mount", emit.state_mount,
                               "kubernetes: where that volume is mounted, petal's --state-dir in the pods (default /opt/petal/.petal)"));
  with_emit(command.add_option("--datasets-pvc", emit.datasets_claim,
                               "kubernetes: the PersistentVolumeClaim with the datasets; \"\" for none (default petal-datasets)"));
  with_emit(command.add_option("--datasets-mount", emit.datasets_mount,
                               "kubernetes: where it is mounted, $PETAL_DATASETS in the pods (default /datasets)"));
  with_emit(command.add_option("--secret", emit.secret,
                               "kubernetes: the Secret with MLFLOW_TRACKING_URI and credentials (default petal-mlflow)"));
  with_emit(command.add_option("--time", emit.time_limit, "slurm: each trial's time limit (default 24:00:00)"));
  with_emit(command.add_option("--partition", emit.partition, "slurm: the partition (default: the cluster's)"));
}

}  // namespace

CLI::App* setup_sweep(CLI::App& app, SweepOptions& options) {
  CLI::App* command = app.add_subcommand(
      "sweep", "run many trials of an experiment (grid, random, seeds) with shared stages, nested MLflow runs, resumable");
  command->add_option("sweep", options.file, "sweep file (TOML), e.g. experiments/flowers5_sweep.toml")
      ->required()
      ->check(CLI::ExistingFile);
  CLI::Option* jobs = command->add_option("-j,--jobs", options.jobs,
                                          "trials at once (default: the sweep file's, else the cores; at most the cores)")
                          ->check(CLI::Range(1, 256));
  CLI::Option* fail_fast = command->add_flag("--fail-fast", options.fail_fast, "after a failed trial, start no new ones");
  command->add_flag("--no-tracking", options.no_tracking, "do not log the sweep to MLflow");
  CLI::Option* list = command->add_flag("--list", options.list, "print the trials and what is cached; run nothing");
  command->add_flag("--no-charts", options.no_charts, "skip the comparison charts");
  CLI::Option* trial = command->add_option("--trial-index", options.trial_index,
                                           "run only trial N (0-based, --list order), alongside other such processes "
                                           "sharing the state folder: one task of a job array")
                           ->type_name("N")
                           ->check(CLI::NonNegativeNumber);
  CLI::Option* summarize = command->add_flag("--summarize", options.summarize,
                                             "build the comparison from the sweep's state, running no trial "
                                             "(after --trial-index runs)");
  CLI::Option* emit =
      command->add_option("--emit", options.emit.kind, "write the sweep as a cluster job: kubernetes or slurm")
          ->type_name("KIND")
          ->check(CLI::Validator(
              [](std::string& kind) -> std::string {
                if (kind == "kubernetes" || kind == "slurm") return "";
                return "unknown kind '" + kind + "': use --emit kubernetes (an Indexed Job manifest) or --emit slurm "
                       "(an sbatch job-array script)";
              },
              "kubernetes|slurm", "emit kind"));
  trial->excludes(summarize)->excludes(emit)->excludes(list)->excludes(jobs)->excludes(fail_fast);
  summarize->excludes(emit)->excludes(list)->excludes(jobs)->excludes(fail_fast);
  emit->excludes(list)->excludes(fail_fast);
  add_emit_options(*command, options.emit, emit);
  command->footer("Running the same command again continues an interrupted sweep: finished trials are kept,\n"
                  "unfinished ones restart from their last committed epoch.\n"
                  "On a cluster: --emit kubernetes|slurm writes a job array whose tasks run --trial-index N,\n"
                  "then --summarize builds the comparison (README \"Sweeps\", \"On a cluster\").");
  return command;
}

namespace {

void print_comparison(const SweepResult& result) {
  std::printf("\n%s\n", to_markdown(result.summary.table).c_str());
  if (result.summary.best >= 0) {
    const TrialRecord& best = result.state.trials[static_cast<std::size_t>(result.summary.best)];
    std::printf("best: %s (%s) %s = %.4f%s%s\n", best.id.c_str(), best.label.c_str(), best.objective_key.c_str(),
                best.objective.get<double>(), best.mlflow_run_id.empty() ? "" : ", MLflow run ",
                best.mlflow_run_id.c_str());
  }
}

int run_one_trial(const SweepDefinition& sweep, const Project& project, const SweepOptions& options,
                  const SweepRunOptions& run_options) {
  const SweepTrialResult result = run_sweep_trial(sweep, project, options.trial_index, run_options);
  if (result.exit_code == kExitOk) {
    std::printf("petal sweep: when every trial has ended: petal sweep %s --summarize\n", options.file.c_str());
  } else if (result.exit_code == kExitInterrupted) {
    std::printf("petal sweep: interrupted; run the same command again to continue the trial\n");
  } else {
    std::printf("petal sweep: trial %s did not finish; run the same command again to retry it\n", result.record.id.c_str());
  }
  return result.exit_code;
}

int run_summary(const SweepDefinition& sweep, const Project& project, const SweepRunOptions& run_options) {
  const SweepResult result = summarize_sweep(sweep, project, run_options);
  print_comparison(result);
  std::printf("petal sweep: comparison in %s\n", result.summary_dir.c_str());
  if (result.exit_code != kExitOk) {
    std::printf("petal sweep: some trials did not finish; run them again (--trial-index N), then summarize again\n");
  }
  return result.exit_code;
}

}  // namespace

int run_sweep(const GlobalOptions& global, const SweepOptions& options) {
  if (!options.emit.kind.empty()) return run_sweep_emit(global, options);
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
  if (options.trial_index >= 0) return run_one_trial(sweep, project, options, run_options);
  if (options.summarize) return run_summary(sweep, project, run_options);
  const SweepResult result = petal::run_sweep(sweep, project, run_options);
  if (options.list) return kExitOk;

  print_comparison(result);
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
