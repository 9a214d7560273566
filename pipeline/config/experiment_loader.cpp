#include <algorithm>
#include <set>

#include "pipeline/config/experiment.h"
#include "pipeline/config/toml_source.h"
#include "pipeline/dag/stage_registry.h"
#include "pipeline/util/fs.h"
#include "pipeline/util/quoting.h"
#include "pipeline/util/suggest.h"

namespace petal {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

const std::vector<std::string> kTopLevelKeys = {"name", "description", "extends", "tracking"};
const std::vector<std::string> kTrackingKeys = {"enabled", "uri", "experiment"};
const std::vector<std::string> kStageControlKeys = {"kind", "needs", "enabled"};

std::string join(const std::vector<std::string>& items) {
  std::string text;
  for (std::size_t i = 0; i < items.size(); ++i) {
    if (i) text += ", ";
    text += items[i];
  }
  return text;
}

// The folder relative paths in a value are taken from: its file's, or the working directory for
// command-line overrides.
fs::path base_dir_of(const SourceLocation& where) {
  if (!where.known() || where.file.rfind("--set", 0) == 0) return fs::current_path();
  const fs::path parent = fs::path(where.file).parent_path();
  return fs::absolute(parent.empty() ? fs::path(".") : parent);
}

class Validator {
 public:
  Validator(const fs::path& file, const StageRegistry& registry) : file_(file), registry_(registry) {}

  Experiment run(const RawValue& root) {
    Experiment exp;
    exp.file = file_;
    for (const auto& [key, value] : root.table) {
      if (key == "name") {
        exp.name = string_value(key, value);
        if (value.leaf.is_string() && exp.name.empty()) fail(value.where, "name must not be empty");
      } else if (key == "description") {
        exp.description = string_value(key, value);
      } else if (key == "tracking") {
        exp.tracking = tracking(value);
      } else if (value.is_table) {
        if (auto stage = this->stage(key, value)) exp.stages.push_back(std::move(*stage));
      } else {
        fail(value.where, "unknown key '" + key + "'" + did_you_mean(key, kTopLevelKeys) +
                              "; top-level keys are " + join(kTopLevelKeys) + ", and one table per stage");
      }
    }
    if (root.table.count("name") == 0) {
      // Line 1, column 1: where the missing key belongs, so editors and CI annotations can jump there.
      fail(SourceLocation{file_.string(), 1, 1}, "name is required: add name = \"flowers5\" (any name) at the top");
    }
    if (!errors_.empty()) throw PetalErrors(std::move(errors_));
    return exp;
  }

 private:
  void fail(const SourceLocation& where, std::string message) { errors_.emplace_back(std::move(message), where); }

  std::string string_value(const std::string& key, const RawValue& value) {
    if (value.is_table || !value.leaf.is_string()) {
      fail(value.where, key + " must be a string");
      return {};
    }
    return value.leaf.get<std::string>();
  }

  TrackingConfig tracking(const RawValue& value) {
    TrackingConfig out;
    if (!value.is_table) {
      fail(value.where, "tracking must be a table: [tracking]");
      return out;
    }
    for (const auto& [key, item] : value.table) {
      const std::string full = "tracking." + key;
      if (key == "enabled") {
        if (item.leaf.is_boolean()) out.enabled = item.leaf.get<bool>();
        else fail(item.where, full + " must be a boolean (true or false)");
      } else if (key == "uri") {
        out.uri = string_value(full, item);
      } else if (key == "experiment") {
        out.experiment = string_value(full, item);
      } else {
        fail(item.where, "unknown key '" + full + "'" + did_you_mean(key, kTrackingKeys) +
                             "; [tracking] allows " + join(kTrackingKeys));
      }
    }
    return out;
  }

  std::optional<StageConfig> stage(const std::string& name, const RawValue& table) {
    const std::size_t errors_before = errors_.size();
    StageConfig stage;
    stage.name = name;
    stage.where = table.where;
    bool enabled = true;
    const StageKind* kind = nullptr;
    if (auto it = table.table.find("kind"); it != table.table.end()) {
      const std::string kind_name = it->second.leaf.is_string() ? it->second.leaf.get<std::string>() : "";
      kind = registry_.find(kind_name);
      if (!kind) {
        fail(it->second.where, name + ".kind must be a registered stage kind" + did_you_mean(kind_name, registry_.names()) +
                                   "; known kinds: " + join(registry_.names()) + " (got " + clipped(it->second.leaf.dump()) + ")");
        return std::nullopt;
      }
    } else {
      kind = registry_.find(name);
      if (!kind) {
        fail(table.where, "[" + name + "] is not a known stage kind" + did_you_mean(name, registry_.names()) +
                              "; known kinds: " + join(registry_.names()) +
                              "; to name a stage freely, set kind = \"...\" in its table");
        return std::nullopt;
      }
    }
    stage.kind = kind->name;
    stage.needs = kind->default_needs;
    if (auto it = table.table.find("needs"); it != table.table.end()) {
      const json& v = it->second.leaf;
      stage.needs_where = it->second.where;
      if (!v.is_array() || !std::all_of(v.begin(), v.end(), [](const json& j) { return j.is_string(); })) {
        fail(it->second.where, name + ".needs must be a list of stage names (got " + clipped(v.dump()) + ")");
      } else if (v.empty() && !kind->default_needs.empty()) {
        // A stage of this kind reads its inputs' outputs: without them it could only fail at run time.
        fail(it->second.where, name + ".needs must name the stages it reads (got []); a " + kind->name +
                                   " stage reads " + join(kind->default_needs) + ": remove `needs` for that default, or "
                                   "list the stages, e.g. needs = [\"" + kind->default_needs.front() + "\"]");
      } else {
        stage.needs = v.get<std::vector<std::string>>();
      }
    } else {
      stage.needs_where = table.where;
    }
    if (auto it = table.table.find("enabled"); it != table.table.end()) {
      if (it->second.leaf.is_boolean()) enabled = it->second.leaf.get<bool>();
      else fail(it->second.where, name + ".enabled must be a boolean (true or false)");
    }

    std::vector<std::string> allowed = kStageControlKeys;
    for (const auto& p : kind->params) allowed.push_back(p.name);
    for (const auto& [key, item] : table.table) {
      if (std::find(kStageControlKeys.begin(), kStageControlKeys.end(), key) != kStageControlKeys.end()) continue;
      const ParamSpec* spec = find_param(kind->params, key);
      if (!spec) {
        std::vector<std::string> names;
        for (const auto& p : kind->params) names.push_back(p.name);
        fail(item.where, name + "." + key + " is not a parameter of stage kind '" + kind->name + "'" +
                             did_you_mean(key, allowed) + "; its parameters are: " +
                             (names.empty() ? std::string("(none)") : join(names)));
        continue;
      }
      param(stage, *spec, item);
    }
    for (const auto& spec : kind->params) {
      if (stage.params.count(spec.name)) continue;
      if (spec.required()) {
        fail(table.where, name + "." + spec.name + " is required: " + spec.type_name() +
                              (spec.help.empty() ? "" : " (" + spec.help + ")"));
      } else {
        json canonical;
        check_param_value(spec, spec.default_value, &canonical);
        canonical = resolve_paths(stage.name + "." + spec.name, spec, canonical, {});
        stage.params[spec.name] = ConfigValue{canonical, {}};
      }
    }
    if (kind->check && errors_.size() == errors_before) {
      for (const auto& [param_name, complaint] : kind->check(stage.params_json())) {
        auto it = stage.params.find(param_name);
        fail(it != stage.params.end() && it->second.where.known() ? it->second.where : table.where,
             name + "." + param_name + " " + complaint);
      }
    }
    if (!enabled) return std::nullopt;
    return stage;
  }

  void param(StageConfig& stage, const ParamSpec& spec, const RawValue& item) {
    const std::string full = stage.name + "." + spec.name;
    if (item.is_table) {
      fail(item.where, full + " must be " + spec.type_name() + " (got a table)");
      return;
    }
    const bool wants_text =
        spec.type == ParamType::String || spec.type == ParamType::Path || spec.type == ParamType::Choice;
    const json& given = (wants_text && item.typed_text && !item.leaf.is_string()) ? json(*item.typed_text) : item.leaf;
    json canonical;
    const std::string complaint = check_param_value(spec, given, &canonical);
    if (!complaint.empty()) {
      fail(item.where, full + " " + complaint);
      return;
    }
    canonical = resolve_paths(full, spec, canonical, item.where);
    stage.params[spec.name] = ConfigValue{canonical, item.where};
  }

  json resolve_paths(const std::string& full, const ParamSpec& spec, const json& value, const SourceLocation& where) {
    if (spec.type == ParamType::Path) return resolve_path(full, value, where);
    if (spec.type != ParamType::PathList) return value;
    json out = json::array();
    for (const auto& item : value) out.push_back(resolve_path(full, item, where));
    return out;
  }

  json resolve_path(const std::string& full, const json& value, const SourceLocation& where) {
    const std::string text = value.get<std::string>();
    if (text.empty()) return text;
    std::string missing;
    const std::string expanded = expand_env(text, &missing);
    if (!missing.empty()) {
      fail(where, full + " uses ${" + missing + "}, which is not set; set it or give a default: ${" + missing +
                      ":-/some/path}");
      return text;
    }
    return absolute_normal(expanded, base_dir_of(where)).string();
  }

  fs::path file_;
  const StageRegistry& registry_;
  std::vector<PetalError> errors_;
};

}  // namespace

json StageConfig::params_json() const {
  json out = json::object();
  for (const auto& [key, value] : params) out[key] = value.value;
  return out;
}

const StageConfig* Experiment::find_stage(const std::string& stage_name) const {
  for (const auto& s : stages) {
    if (s.name == stage_name) return &s;
  }
  return nullptr;
}

Experiment load_experiment(const fs::path& file, const StageRegistry& registry, const LoadOptions& options) {
  RawValue root = load_merged_toml(file);
  std::vector<PetalError> override_errors;
  for (const auto& assignment : options.overrides) {
    try {
      apply_override(root, assignment);
    } catch (const PetalError& e) {
      override_errors.push_back(e);
    }
  }
  for (const auto& value : options.values) {
    RawValue raw;
    raw.leaf = value.value;
    raw.where = value.where;
    try {
      set_raw_value(root, value.path, std::move(raw));
    } catch (const PetalError& e) {
      override_errors.push_back(e);
    }
  }
  if (!override_errors.empty()) throw PetalErrors(std::move(override_errors));
  return Validator(file, registry).run(root);
}

}  // namespace petal
