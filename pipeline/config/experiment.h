#pragma once
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "pipeline/util/error.h"

namespace petal {

class StageRegistry;

// One validated parameter value and where it was set (no location: it is the kind's default).
struct ConfigValue {
  nlohmann::json value;
  SourceLocation where;
};

struct StageConfig {
  std::string name;   // the table's name: [train]
  std::string kind;   // the registered kind; the name unless `kind = "..."` is given
  std::vector<std::string> needs;  // upstream stage names
  SourceLocation where;            // the table header, or the first key that created the table
  SourceLocation needs_where;
  std::map<std::string, ConfigValue> params;  // every parameter of the kind, defaults filled in

  nlohmann::json params_json() const;  // canonical: sorted keys, typed values
};

struct TrackingConfig {
  bool enabled = true;
  std::string uri;         // "" means petal's embedded local server
  std::string experiment;  // MLflow experiment name; "" means the experiment's own name
};

// A fully resolved experiment: `extends` merged, `--set` overrides applied, every value validated
// and canonical. Two files that mean the same thing resolve to equal Experiments.
struct Experiment {
  std::filesystem::path file;
  std::string name;
  std::string description;
  TrackingConfig tracking;
  std::vector<StageConfig> stages;  // enabled stages, sorted by name

  const StageConfig* find_stage(const std::string& name) const;
  nlohmann::json to_json() const;
};

// A typed override with the place that asked for it (a sweep file's axis), so a value the
// experiment rejects is reported there.
struct ValueOverride {
  std::vector<std::string> path;  // e.g. {"train", "lr"}
  nlohmann::json value;
  SourceLocation where;
};

struct LoadOptions {
  std::vector<std::string> overrides;  // "stage.key=value", as given to --set
  std::vector<ValueOverride> values;   // applied after `overrides`
};

// Reads, merges and validates an experiment file. Throws PetalErrors listing every problem, each
// with file:line:column, the key, and what is allowed.
Experiment load_experiment(const std::filesystem::path& file, const StageRegistry& registry,
                           const LoadOptions& options = {});

// The resolved experiment as an experiment file (canonical TOML) or as JSON.
std::string experiment_to_toml(const Experiment& experiment);
std::string experiment_to_json(const Experiment& experiment);

}  // namespace petal
