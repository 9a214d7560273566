#include "stages/augment/policy_presets.h"

#include <toml++/toml.h>

#include <cmath>
#include <cstdlib>
#include <stdexcept>

#include "pipeline/util/suggest.h"

namespace petal::augment {

using nlohmann::json;

namespace {

// Each op is a table with a probability (the chance it is applied to a sample) and, for ops that
// have one, a magnitude; augment_policy.cpp documents each magnitude and its range. Ops a preset
// does not list are off. Editing this text changes the augment stage's version (its hash is part
// of it), so cached augment outputs made with the old presets are not reused.
const char* const kPresets = R"toml(
# light: crops and flips with mild colour changes; for small models or short schedules.
[light]
crop       = { probability = 1.0, magnitude = 0.35 }
hflip      = { probability = 0.5 }
brightness = { probability = 0.3, magnitude = 0.1 }
contrast   = { probability = 0.3, magnitude = 0.1 }

# medium: the usual ImageNet-style recipe; each colour jitter has its own probability.
[medium]
crop       = { probability = 1.0, magnitude = 0.25 }
hflip      = { probability = 0.5 }
rotate     = { probability = 0.3, magnitude = 15 }
brightness = { probability = 0.5, magnitude = 0.2 }
contrast   = { probability = 0.5, magnitude = 0.2 }
saturation = { probability = 0.5, magnitude = 0.2 }
hue        = { probability = 0.3, magnitude = 0.05 }
blur       = { probability = 0.1, magnitude = 1.5 }
erase      = { probability = 0.25, magnitude = 0.2 }

# deep: strong geometric and photometric changes for long schedules and large models.
[deep]
crop       = { probability = 1.0, magnitude = 0.08 }
hflip      = { probability = 0.5 }
vflip      = { probability = 0.1 }
rotate     = { probability = 0.5, magnitude = 30 }
translate  = { probability = 0.3, magnitude = 0.15 }
scale      = { probability = 0.3, magnitude = 0.2 }
elastic    = { probability = 0.2, magnitude = 0.04 }
optical    = { probability = 0.2, magnitude = 0.3 }
brightness = { probability = 0.8, magnitude = 0.4 }
contrast   = { probability = 0.8, magnitude = 0.4 }
saturation = { probability = 0.8, magnitude = 0.4 }
hue        = { probability = 0.5, magnitude = 0.1 }
blur       = { probability = 0.2, magnitude = 2.0 }
noise      = { probability = 0.2, magnitude = 0.05 }
erase      = { probability = 0.5, magnitude = 0.33 }
)toml";

json table_to_json(const toml::table& table) {
  json out = json::object();
  for (const auto& [key, node] : table) {
    const std::string name(key.str());
    if (const auto* sub = node.as_table()) out[name] = table_to_json(*sub);
    else if (const auto* i = node.as_integer()) out[name] = i->get();
    else if (const auto* f = node.as_floating_point()) out[name] = f->get();
    else throw std::invalid_argument("presets: " + name + " must be a number or a table");
  }
  return out;
}

const json& parsed_presets() {
  static const json presets = [] {
    try {
      return table_to_json(toml::parse(std::string_view(kPresets), std::string_view("augment presets")));
    } catch (const toml::parse_error& e) {
      throw std::logic_error("built-in augment presets are not valid TOML: " + std::string(e.description()));
    }
  }();
  return presets;
}

std::string trim(const std::string& text) {
  const auto first = text.find_first_not_of(" \t");
  if (first == std::string::npos) return "";
  return text.substr(first, text.find_last_not_of(" \t") - first + 1);
}

std::vector<std::string> op_name_list() {
  std::vector<std::string> names;
  for (const auto& info : op_table()) names.emplace_back(info.name);
  return names;
}

// One override; throws std::invalid_argument with the complaint (without the entry prefix).
void apply_override(Policy& policy, const std::string& text) {
  const auto equals = text.find('=');
  if (equals == std::string::npos) {
    throw std::invalid_argument("expected op.field=value, e.g. rotate.probability=0.3");
  }
  const std::string key = trim(text.substr(0, equals));
  const std::string value_text = trim(text.substr(equals + 1));
  const auto dot = key.find('.');
  if (dot == std::string::npos) {
    throw std::invalid_argument("'" + key + "' names no field; expected op.field=value with field probability or "
                                "magnitude, e.g. " + key + ".probability=0.3");
  }
  const std::string op_name = key.substr(0, dot);
  const std::string field = key.substr(dot + 1);
  const auto op = find_op(op_name);
  if (!op) {
    throw std::invalid_argument("unknown op '" + op_name + "'" + did_you_mean(op_name, op_name_list()) +
                                "; ops are: " + op_names());
  }
  if (field != "probability" && field != "magnitude") {
    throw std::invalid_argument(op_name + "." + field + ": unknown field '" + field + "'" +
                                did_you_mean(field, {"probability", "magnitude"}) +
                                "; fields are probability and magnitude");
  }
  char* end = nullptr;
  const double value = std::strtod(value_text.c_str(), &end);
  if (value_text.empty() || end != value_text.c_str() + value_text.size() || !std::isfinite(value)) {
    throw std::invalid_argument(key + " must be a number (got \"" + value_text + "\")");
  }
  const std::string complaint = check_setting(*op, field, value);
  if (!complaint.empty()) throw std::invalid_argument(complaint);
  if (field == "probability") policy[*op].probability = value;
  else policy[*op].magnitude = value;
}

}  // namespace

const std::string& presets_toml() {
  static const std::string text = kPresets;
  return text;
}

const std::vector<std::string>& policy_names() {
  static const std::vector<std::string> names = {"none", "light", "medium", "deep"};
  return names;
}

Policy preset_policy(const std::string& name) {
  if (name == "none") return Policy();
  const json& presets = parsed_presets();
  if (!presets.contains(name)) {
    throw std::invalid_argument("unknown augmentation policy '" + name + "'; policies are: none, light, medium, deep");
  }
  Policy policy = Policy::from_json(json{{"name", name}, {"ops", presets.at(name)}});
  return policy;
}

void apply_overrides(Policy& policy, const std::vector<std::string>& overrides) {
  for (std::size_t i = 0; i < overrides.size(); ++i) {
    try {
      apply_override(policy, overrides[i]);
    } catch (const std::invalid_argument& e) {
      throw std::invalid_argument("entry " + std::to_string(i + 1) + " \"" + overrides[i] + "\": " + e.what());
    }
  }
}

std::vector<std::string> override_errors(const std::vector<std::string>& overrides) {
  std::vector<std::string> errors;
  Policy scratch;
  for (std::size_t i = 0; i < overrides.size(); ++i) {
    try {
      apply_override(scratch, overrides[i]);
    } catch (const std::invalid_argument& e) {
      errors.push_back("entry " + std::to_string(i + 1) + " \"" + overrides[i] + "\": " + e.what());
    }
  }
  return errors;
}

Policy resolve_policy(const std::string& name, const std::vector<std::string>& overrides) {
  Policy policy = preset_policy(name);
  apply_overrides(policy, overrides);
  return policy;
}

}  // namespace petal::augment
