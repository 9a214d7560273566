#pragma once
#include <filesystem>
#include <cstdint>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "pipeline/config/param_spec.h"
#include "pipeline/dag/run_tracking.h"

namespace petal {

struct DataParallelLaunch;  // pipeline/exec/data_parallel_launch.h

// What a stage reports besides its files: final metrics (name -> number), per-step series (e.g.
// a loss per epoch, each value stamped when recorded so a replayed upload is recognised as a
// duplicate), artifacts (files of its output worth showing in MLflow) and short notes. Stored with
// the committed cache entry, so a cached stage still shows its results.
struct StageReport {
  struct Point {
    std::string name;
    double value = 0;
    std::int64_t step = 0;
    std::int64_t timestamp_ms = 0;
  };
  nlohmann::json metrics = nlohmann::json::object();
  std::vector<Point> series;
  std::vector<std::string> artifacts;  // paths relative to the stage's output folder
  std::vector<std::string> notes;

  void metric(const std::string& name, double value) { metrics[name] = value; }
  void metric(const std::string& name, double value, std::int64_t step);  // a point of a series
  void artifact(std::string relative_path) { artifacts.push_back(std::move(relative_path)); }
  void note(std::string text) { notes.push_back(std::move(text)); }
  nlohmann::json to_json() const;
  static StageReport from_json(const nlohmann::json& json);
};

// Everything a stage implementation sees while it runs. It must write only below `output_dir`;
// the executor commits that folder atomically on success and discards it on failure.
struct StageContext {
  std::string stage_name;
  const nlohmann::json& params;                          // canonical, defaults filled in
  std::map<std::string, std::filesystem::path> inputs;   // upstream stage name -> its committed out/
  std::filesystem::path output_dir;
  std::filesystem::path log_file;                        // where subprocess output goes
  std::filesystem::path base_dir;                        // the experiment file's folder
  std::function<bool()> cancelled;                       // poll in long loops; throw StageCancelled
  StageReport& report;
  int threads = 1;  // the stage's CPU budget ($PETAL_THREADS, else the cores); use no more
  // A folder that survives an interrupted or killed attempt at this same key (same params, same
  // inputs) and is deleted once the output is committed: long stages keep checkpoints here and
  // resume from them. Empty when the executor offers none (then nothing can resume).
  std::filesystem::path resume_dir;
  // The run's experiment tracking (MLflow), for stages that talk to it beyond reporting
  // (register); null when the run is not tracked.
  RunTracking* tracking = nullptr;
  // Set by `petal run --nproc/--nnodes`: stages that train data-parallel (train, finetune) start
  // one worker per local rank; the others ignore it. Null: one process.
  const DataParallelLaunch* data_parallel = nullptr;
};

// Thrown by an implementation that noticed `cancelled()`; the executor treats it as an interruption.
struct StageCancelled : std::exception {
  const char* what() const noexcept override { return "stage cancelled"; }
};

// A file or folder outside the cache whose content enters the stage's key (e.g. a local dataset).
struct ExternalInput {
  std::string param;              // the parameter naming it, for error messages and --explain
  std::filesystem::path path;
  std::string id;                 // its name in the key when a parameter names several ("deps[1]")
  const std::string& name() const { return id.empty() ? param : id; }
};

// A registered kind of stage: its parameters (validated by the config loader), its default
// upstream stages and its implementation. Bump `version` whenever the implementation's output
// changes for the same inputs: it is part of every key.
struct StageKind {
  std::string name;
  std::string version;
  std::string summary;
  std::vector<ParamSpec> params;
  std::vector<std::string> default_needs;
  bool uses_torch = false;  // the key then includes the LibTorch version
  std::function<std::vector<ExternalInput>(const nlohmann::json& params)> external_inputs;
  // Checks across parameters that ParamSpec cannot express; returns (param, complaint) pairs,
  // each complaint phrased to follow the key ("must sum to 1 (got 1.2)").
  std::function<std::vector<std::pair<std::string, std::string>>(const nlohmann::json& params)> check;
  std::function<void(StageContext&)> run;
};

}  // namespace petal
