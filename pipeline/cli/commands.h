#pragma once
#include <CLI/CLI.hpp>
#include <optional>
#include <string>
#include <vector>

// One subcommand per file (cmd_<name>.cpp): an options struct, a setup_<name> that binds the
// command line to it, and a run_<name> that returns the process's exit code. main() dispatches.
namespace petal::cli {

// Options every subcommand understands.
struct GlobalOptions {
  std::string state_dir;  // --state-dir; empty: $PETAL_HOME, then the nearest .petal folder
};

struct ExperimentOptions {
  std::string file;
  std::vector<std::string> overrides;  // --set
};
void add_experiment_options(CLI::App& command, ExperimentOptions& options);

struct RunOptions {
  ExperimentOptions experiment;
  int jobs = 0;  // 0: number of cores
  bool explain = false;
  bool verify = false;
  bool keep_going = false;
  bool no_tracking = false;
  std::string pin;
};
CLI::App* setup_run(CLI::App& app, RunOptions& options);
int run_run(const GlobalOptions& global, const RunOptions& options);

struct StatusOptions {
  ExperimentOptions experiment;
  bool explain = false;
  bool verify = false;
  bool json = false;
};
CLI::App* setup_status(CLI::App& app, StatusOptions& options);
int run_status(const GlobalOptions& global, const StatusOptions& options);

struct ConfigOptions {
  ExperimentOptions experiment;
  bool json = false;
};
CLI::App* setup_config(CLI::App& app, ConfigOptions& options);
int run_config(const GlobalOptions& global, const ConfigOptions& options);

struct GcOptionsCli {
  std::string max_size;
  bool dry_run = false;
};
CLI::App* setup_gc(CLI::App& app, GcOptionsCli& options);
int run_gc(const GlobalOptions& global, const GcOptionsCli& options);

struct PinOptions {
  ExperimentOptions experiment;
  std::string name;
  bool list = false;
  std::string remove;
};
CLI::App* setup_pin(CLI::App& app, PinOptions& options);
int run_pin(const GlobalOptions& global, const PinOptions& options);

struct SyncOptions {
  std::string uri;  // send every spool here instead of where it was recorded
};
CLI::App* setup_sync(CLI::App& app, SyncOptions& options);
int run_sync(const GlobalOptions& global, const SyncOptions& options);

struct PredictOptions {
  std::string model;                // folder, runs:/..., models:/name/version, models:/name@alias
  std::vector<std::string> images;
  int top_k = 3;
  bool json = false;
  std::string tracking_uri;
  int threads = 0;                  // 0: $PETAL_THREADS or the cores
};
CLI::App* setup_predict(CLI::App& app, PredictOptions& options);
// Exit code 0 when every image was classified, 1 when one could not be read or decoded.
int run_predict(const GlobalOptions& global, const PredictOptions& options);

struct SweepOptions {
  std::string file;
  int jobs = 0;  // 0: the sweep file's, else the cores
  bool fail_fast = false;
  bool no_tracking = false;
  bool list = false;
  bool no_charts = false;
};
CLI::App* setup_sweep(CLI::App& app, SweepOptions& options);
// Exit code 0 when every trial finished, 1 when one failed, 130 when interrupted.
int run_sweep(const GlobalOptions& global, const SweepOptions& options);

struct CompareOptions {
  std::string experiment;  // MLflow experiment name or experiment file
  std::string filter;
  std::string sort;
  bool ascending = false;
  int top = 0;
  std::vector<std::string> metrics;
  std::vector<std::string> params;
  std::string sweep;
  bool include_parents = false;
  bool csv = false;
  std::string tracking_uri;
};
CLI::App* setup_compare(CLI::App& app, CompareOptions& options);
int run_compare(const GlobalOptions& global, const CompareOptions& options);

}  // namespace petal::cli
