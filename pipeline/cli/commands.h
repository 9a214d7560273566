#pragma once
#include <CLI/CLI.hpp>

#include "pipeline/exec/data_parallel_launch.h"
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
  DataParallelLaunch data_parallel;  // --nproc, --nnodes, --node-rank, --master-addr, --master-port
};
CLI::App* setup_run(CLI::App& app, RunOptions& options);
int run_run(const GlobalOptions& global, const RunOptions& options);

struct ScheduleOptions {
  ExperimentOptions experiment;
  std::string cron;        // 5-field cron expression or @daily-style macro
  std::string time_zone;   // IANA name; empty: $TZ, else the machine's zone
  bool once = false;       // one trigger now, then exit (for crontab and systemd timers)
  bool history = false;    // print recent triggers and exit
  int retries = 2;
  std::string backoff = "60s";
  std::string max_backoff = "1h";
  int max_triggers = 0;    // 0: until stopped
};
CLI::App* setup_schedule(CLI::App& app, ScheduleOptions& options);
int run_schedule(const GlobalOptions& global, const ScheduleOptions& options);

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
  std::string tta = "none";         // test-time augmentation: evaluate::tta_modes()
};
CLI::App* setup_predict(CLI::App& app, PredictOptions& options);
// Exit code 0 when every image was classified, 1 when one could not be read or decoded.
int run_predict(const GlobalOptions& global, const PredictOptions& options);

// `petal sweep --emit`: the sweep as a cluster job (pipeline/sweep/cluster_job.h).
struct SweepEmitOptions {
  std::string kind;                        // kubernetes | slurm; "" = no emitting
  std::string output;                      // "" or "-": stdout
  int cpus = 4;
  int memory_gib = 8;
  int gpus = 0;
  std::string image = "petal:latest";      // kubernetes (the repository's Dockerfile)
  std::string image_petal = "build/petal"; // petal in that image, relative to its WORKDIR /opt/petal
  std::string state_claim = "petal-state";
  std::string state_mount = "/opt/petal/.petal";
  std::string datasets_claim = "petal-datasets";
  std::string datasets_mount = "/datasets";
  std::string secret = "petal-mlflow";
  std::string time_limit = "24:00:00";     // slurm
  std::string partition;
};

struct SweepOptions {
  std::string file;
  int jobs = 0;  // 0: the sweep file's, else the cores
  bool fail_fast = false;
  bool no_tracking = false;
  bool list = false;
  bool no_charts = false;
  int trial_index = -1;  // >= 0: run only this trial (a job array's task)
  bool summarize = false;
  SweepEmitOptions emit;
};
CLI::App* setup_sweep(CLI::App& app, SweepOptions& options);
// Exit code 0 when every trial finished, 1 when one failed, 130 when interrupted.
int run_sweep(const GlobalOptions& global, const SweepOptions& options);
// Writes the cluster job file (cmd_sweep_emit.cpp); exit code 0, or a PetalError.
int run_sweep_emit(const GlobalOptions& global, const SweepOptions& options);

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
