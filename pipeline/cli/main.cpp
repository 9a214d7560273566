// petal's entry point: parses the command line and dispatches to one subcommand (cmd_*.cpp).
#include <petal/build_info.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <functional>

#include "pipeline/cli/commands.h"
#include "pipeline/util/error.h"

int main(int argc, char** argv) {
  using namespace petal;
  using namespace petal::cli;
  CLI::App app{"petal: a reproducible, cached image-classification pipeline with MLflow tracking"};
  app.name("petal");
  app.set_version_flag("--version", std::string("petal ") + build_info::petal_version +
                                        " (LibTorch for torch stages: " + build_info::torch_version + ")");
  app.require_subcommand(1);
  app.fallthrough();  // global options may also follow the subcommand
  GlobalOptions global;
  app.add_option("--state-dir", global.state_dir, "where the cache and run log live (default: $PETAL_HOME or ./.petal)")
      ->type_name("DIR");
  app.footer("Exit codes: 0 success, 1 a stage failed, 2 bad command line or experiment file,\n"
             "3 cache or file-system problem, 130 interrupted.");

  std::function<int()> chosen;
  RunOptions run;
  setup_run(app, run)->callback([&] { chosen = [&] { return run_run(global, run); }; });
  StatusOptions status;
  setup_status(app, status)->callback([&] { chosen = [&] { return run_status(global, status); }; });
  ConfigOptions config;
  setup_config(app, config)->callback([&] { chosen = [&] { return run_config(global, config); }; });
  GcOptionsCli gc;
  setup_gc(app, gc)->callback([&] { chosen = [&] { return run_gc(global, gc); }; });
  SyncOptions sync;
  setup_sync(app, sync)->callback([&] { chosen = [&] { return run_sync(global, sync); }; });
  PredictOptions predict;
  setup_predict(app, predict)->callback([&] { chosen = [&] { return run_predict(global, predict); }; });
  SweepOptions sweep;
  setup_sweep(app, sweep)->callback([&] { chosen = [&] { return run_sweep(global, sweep); }; });
  CompareOptions compare;
  setup_compare(app, compare)->callback([&] { chosen = [&] { return run_compare(global, compare); }; });
  ScheduleOptions schedule;
  setup_schedule(app, schedule)->callback([&] { chosen = [&] { return run_schedule(global, schedule); }; });
  PinOptions pin;
  setup_pin(app, pin)->callback([&] { chosen = [&] { return run_pin(global, pin); }; });

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? kExitOk : kExitUsage;
  }
  try {
    return chosen ? chosen() : kExitUsage;
  } catch (const PetalError& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "petal: error: %s\n", format_error(e).c_str());
    return e.exit_code();
  } catch (const std::exception& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "petal: internal error: %s\n", e.what());
    return kExitEnvironment;
  }
}
