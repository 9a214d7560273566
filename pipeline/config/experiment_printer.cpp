#include <toml++/toml.h>

#include <sstream>

#include "pipeline/config/experiment.h"

namespace petal {

using nlohmann::json;

namespace {

void insert_json(toml::table& table, const std::string& key, const json& value);

toml::array to_toml_array(const json& value) {
  toml::array array;
  for (const auto& item : value) {
    if (item.is_string()) array.push_back(item.get<std::string>());
    else if (item.is_boolean()) array.push_back(item.get<bool>());
    else if (item.is_number_integer()) array.push_back(item.get<int64_t>());
    else if (item.is_number()) array.push_back(item.get<double>());
    else if (item.is_array()) array.push_back(to_toml_array(item));
    else if (item.is_object()) {
      toml::table t;
      for (const auto& [k, v] : item.items()) insert_json(t, k, v);
      array.push_back(std::move(t));
    }
  }
  return array;
}

void insert_json(toml::table& table, const std::string& key, const json& value) {
  if (value.is_string()) table.insert_or_assign(key, value.get<std::string>());
  else if (value.is_boolean()) table.insert_or_assign(key, value.get<bool>());
  else if (value.is_number_integer()) table.insert_or_assign(key, value.get<int64_t>());
  else if (value.is_number()) table.insert_or_assign(key, value.get<double>());
  else if (value.is_array()) table.insert_or_assign(key, to_toml_array(value));
  else if (value.is_object()) {
    toml::table child;
    for (const auto& [k, v] : value.items()) insert_json(child, k, v);
    table.insert_or_assign(key, std::move(child));
  }
}

}  // namespace

json Experiment::to_json() const {
  json stages_json = json::object();
  for (const auto& s : stages) {
    stages_json[s.name] = json{{"kind", s.kind}, {"needs", s.needs}, {"params", s.params_json()}};
  }
  return json{{"name", name},
              {"description", description},
              {"tracking", {{"enabled", tracking.enabled}, {"uri", tracking.uri}, {"experiment", tracking.experiment}}},
              {"stages", stages_json}};
}

std::string experiment_to_json(const Experiment& experiment) { return experiment.to_json().dump(2) + "\n"; }

std::string experiment_to_toml(const Experiment& experiment) {
  // Written as an experiment file that loads back to the same Experiment: stage parameters sit
  // directly in the stage's table, beside `kind` and `needs`.
  toml::table root;
  root.insert_or_assign("name", experiment.name);
  if (!experiment.description.empty()) root.insert_or_assign("description", experiment.description);
  toml::table tracking;
  tracking.insert_or_assign("enabled", experiment.tracking.enabled);
  tracking.insert_or_assign("uri", experiment.tracking.uri);
  tracking.insert_or_assign("experiment", experiment.tracking.experiment);
  root.insert_or_assign("tracking", std::move(tracking));
  for (const auto& s : experiment.stages) {
    toml::table stage;
    stage.insert_or_assign("kind", s.kind);
    insert_json(stage, "needs", json(s.needs));
    for (const auto& [key, value] : s.params) insert_json(stage, key, value.value);
    root.insert_or_assign(s.name, std::move(stage));
  }
  std::ostringstream out;
  out << "# Resolved by `petal config`: extends merged, overrides applied, defaults filled in.\n";
  out << toml::toml_formatter(root, (toml::toml_formatter::default_flags & ~toml::format_flags::allow_literal_strings) | toml::format_flags::relaxed_float_precision);
  out << "\n";
  return out.str();
}

}  // namespace petal
