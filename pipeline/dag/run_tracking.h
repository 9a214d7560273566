#pragma once
// What a stage may ask of the run's experiment tracking. The core only declares it; the tracking
// library implements it (tracking/run_tracker.h) and the executor hands it to stages, so stages
// built into the core (register) reach the MLflow server without the core linking libcurl.
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace petal {

// A request to put a logged model into the model registry and to decide its alias.
struct ModelRegistration {
  std::string registered_model;          // created when missing
  std::string artifact_path;             // the MLflow model's folder among this run's artifacts
  std::string local_model_dir;           // the same folder on disk: uploaded if the run lacks it
  std::string model_digest;              // SHA-256 of the weights: one version per distinct model
  std::map<std::string, std::string> tags;    // version tags (dataset digest, git commit, ...)
  std::map<std::string, double> metrics;      // key metrics, stored as version tags "metric.<name>"
  std::string description;
  // Promotion: `champion` moves to the new version only if metrics[metric] beats the current
  // champion's by more than `margin` (in the better direction); otherwise it gets `challenger`.
  std::string metric = "test_f1";
  bool higher_is_better = true;
  double margin = 0.0;
};

struct RegistrationResult {
  std::string version;                   // the model version (existing one if the digest matched)
  bool created = false;                  // false: a version of this exact model already existed
  std::string alias;                     // "champion" or "challenger"
  std::string previous_champion;         // "" when there was none
  std::optional<double> champion_metric;  // the previous champion's value of `metric`
  std::string reason;                    // one readable sentence: why this alias
  std::string source;                    // the version's source URI
  std::string run_id;
};

class RunTracking {
 public:
  virtual ~RunTracking() = default;
  // Registers the model as described; throws PetalError with a readable message when the server
  // cannot be reached or refuses (nothing is then half-done in a way a re-run would not repair).
  virtual RegistrationResult register_model(const ModelRegistration& request) = 0;
};

}  // namespace petal
