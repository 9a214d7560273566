#pragma once
// What a sweep remembers between invocations, so that running the same command again continues
// it: the parent MLflow run, each trial's petal run id (a resumed trial logs into its own MLflow
// run again) and, for finished trials, their results. Kept in <state>/sweeps/<id>.json, rewritten
// atomically after every change, so a kill at any moment leaves the previous or the new version.
#include <cstdint>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace petal {

// Finished and Pruned are final: a resumed sweep runs the others again.
enum class TrialStatus { Pending, Running, Finished, Failed, Interrupted, Pruned };
const char* to_string(TrialStatus status);
TrialStatus trial_status_from(const std::string& text);  // unknown text: Pending

struct TrialRecord {
  std::string id;
  std::string label;
  nlohmann::json values = nlohmann::json::object();  // the swept values
  TrialStatus status = TrialStatus::Pending;
  std::string petal_run_id;   // fixed at the first attempt; reused when the trial resumes
  std::string mlflow_run_id;
  nlohmann::json metrics = nlohmann::json::object();  // "stage.metric" -> final value
  // The per-epoch values of every stage, in graph order: [{"stage", "name", "points": [[step, value], ...]}].
  nlohmann::json curves = nlohmann::json::array();
  std::string objective_key;                 // the metric the objective resolved to, e.g. "evaluate.val_accuracy"
  nlohmann::json objective = nullptr;        // its value; null when the trial did not report it
  double seconds = 0;  // wall time of its latest attempt
  int attempts = 0;
  int stages_ran = 0;
  int stages_cached = 0;
  std::string error;
};

struct SweepState {
  std::string sweep_id;  // <name>-<first 12 hex digits of the digest>
  std::string name;
  std::string digest;    // of the resolved trials: another definition is another sweep
  std::string sweep_file;
  std::string parent_petal_run_id;  // the parent's local id (its MLflow run is found by it)
  std::string parent_mlflow_run_id;
  std::int64_t created_ms = 0;
  std::vector<TrialRecord> trials;

  nlohmann::json to_json() const;
  static SweepState from_json(const nlohmann::json& json);
  // nullopt when the file does not exist; PetalError naming the file when it cannot be read.
  static std::optional<SweepState> load(const std::filesystem::path& file);
  void save(const std::filesystem::path& file) const;
  TrialRecord* find(const std::string& trial_id);
};

}  // namespace petal
