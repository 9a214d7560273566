#include <cstdio>
#include <thread>

#include "pipeline/cache/pins.h"
#include "pipeline/cli/commands.h"
#include "pipeline/cli/session.h"
#include "pipeline/exec/executor.h"
#include "pipeline/exec/progress.h"
#include "pipeline/util/cancel.h"
#include "pipeline/util/fs.h"
#include "tracking/run_tracker.h"

namespace petal::cli {

CLI::App* setup_run(CLI::App& app, RunOptions& options) {
  CLI::App* command = app.add_subcommand("run", "run an experiment: execute the stages whose inputs changed");
  add_experiment_options(*command, options.experiment);
  command->add_option("-j,--jobs", options.jobs, "stages run in parallel (default: number of cores)")
      ->check(CLI::Range(1, 256));
  command->add_flag("--explain", options.explain, "say why each stage that runs is not cached");
  command->add_flag("--verify", options.verify, "re-hash cached outputs instead of trusting size and mtime");
  command->add_flag("-k,--keep-going", options.keep_going, "after a failure, still run stages that do not depend on it");
  command->add_flag("--no-tracking", options.no_tracking, "do not log this run to MLflow");
  command->add_option("--pin", options.pin, "after success, pin this run's cache entries under NAME (kept by gc)")
      ->type_name("NAME");
  DataParallelLaunch& dp = options.data_parallel;
  const char* group = "Data-parallel training (train, finetune)";
  command->add_option("--nproc", dp.nproc, "training processes on this host (ranks share the global batch)")
      ->check(CLI::Range(1, 1024))->group(group);
  command->add_option("--nnodes", dp.nnodes, "hosts taking part (each runs petal run with its --node-rank)")
      ->envname("NNODES")->check(CLI::Range(1, 4096))->group(group);
  command->add_option("--node-rank", dp.node_rank, "this host's index; host 0 hosts the rendezvous and logs to MLflow")
      ->envname("NODE_RANK")->check(CLI::Range(0, 4095))->group(group);
  command->add_option("--master-addr", dp.master_addr, "address of host 0's rendezvous")
      ->envname("MASTER_ADDR")->group(group);
  command->add_option("--master-port", dp.master_port, "port of the rendezvous (default: a free one; needed with --nnodes > 1)")
      ->envname("MASTER_PORT")->check(CLI::Range(1, 65535))->group(group);
  return command;
}

int run_run(const GlobalOptions& global, const RunOptions& options) {
  Interrupt::install_handlers();
  options.data_parallel.validate();
  auto session = Session::open(global, options.experiment);
  const Plan plan = session->plan(options.verify);

  const int jobs = options.jobs > 0 ? options.jobs : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  const std::string run_id = new_run_id();
  std::printf("petal: %s — %zu stages (%zu cached), run %s\n", session->experiment.name.c_str(), plan.stages.size(),
              plan.cached_count(), run_id.c_str());
  ProgressPrinter printer(stdout, plan.stages.size(), session->experiment.name, &session->log, &session->cache,
                          options.explain);
  std::unique_ptr<RunTracker> tracker;
  const bool follower_host = options.data_parallel.node_rank > 0;
  if (follower_host) {
    std::printf("petal: host %d of %d in data-parallel training: host 0 logs the run to MLflow, this one does not\n",
                options.data_parallel.node_rank, options.data_parallel.nnodes);
  }
  if (!options.no_tracking && !follower_host) {
    const TrackingTarget target = resolve_tracking(session->experiment, session->project, stdout);
    if (target.enabled) {
      if (!target.problem.empty()) std::printf("petal: warning: %s\n", target.problem.c_str());
      tracker = std::make_unique<RunTracker>(session->experiment, plan, session->project, target, run_id, session->cache);
    }
  }
  ObserverList observers;
  observers.add(&printer);
  observers.add(tracker.get());
  ExecuteOptions execute_options;
  execute_options.jobs = jobs;
  execute_options.keep_going = options.keep_going;
  execute_options.run_id = run_id;
  execute_options.experiment = session->experiment.name;
  execute_options.base_dir = session->base_dir();
  execute_options.tracking = tracker.get();
  execute_options.verify = options.verify;
  if (options.data_parallel.active()) execute_options.data_parallel = &options.data_parallel;
  RunResult result = execute(plan, session->cache, session->log, observers, execute_options);
  printer.print_summary(result);
  if (tracker) {
    const int tracking_exit = tracker->finish(result, stdout);
    if (result.exit_code == kExitOk) result.exit_code = tracking_exit;  // a refused run's tracking fails the run
  }
  session->cache.remove_stale_temps();  // leftovers of killed runs (only keys no one is building)
  if (result.exit_code == kExitInterrupted) {
    std::printf("petal: interrupted; completed stages are cached, and nothing partial entered the cache\n");
  }
  if (result.exit_code == kExitOk && !options.pin.empty()) {
    Pin pin{options.pin, session->experiment.name, {}, now_ms()};
    for (const auto& stage : plan.stages) pin.keys.push_back(stage.key);
    Pins(session->project.pins_dir()).save(pin);
    std::printf("petal: pinned %zu entries as '%s'\n", pin.keys.size(), options.pin.c_str());
  }
  return result.exit_code;
}

}  // namespace petal::cli
