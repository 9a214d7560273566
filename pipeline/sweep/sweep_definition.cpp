#include "pipeline/sweep/sweep_definition.h"

#include <algorithm>
#include <cmath>
#include <map>

#include "pipeline/config/toml_source.h"
#include "pipeline/util/suggest.h"

namespace petal {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

const std::vector<std::string> kTopLevelKeys = {"name",   "description", "experiment", "set",      "grid",
                                                "random", "repeat",      "objective",  "execution", "pruning"};
constexpr double kIntBound = 2147483647;  // integer parameters are int32 (ParamSpec::integer)
const std::vector<std::string> kDistributionKinds = {"choice", "uniform", "log_uniform", "int_uniform"};

std::string join(const std::vector<std::string>& items) {
  std::string text;
  for (const auto& item : items) text += (text.empty() ? "" : ", ") + item;
  return text;
}

class Reader {
 public:
  explicit Reader(const fs::path& file) : file_(file) {}

  SweepDefinition run(const RawValue& root) {
    SweepDefinition sweep;
    sweep.file = file_;
    for (const auto& [key, value] : root.table) {
      if (key == "name") {
        sweep.name = string_value(key, value);
      } else if (key == "description") {
        sweep.description = string_value(key, value);
      } else if (key == "experiment") {
        const std::string text = string_value(key, value);
        sweep.experiment_where = value.where;
        if (!text.empty()) {
          const fs::path base = file_.parent_path().empty() ? fs::path(".") : file_.parent_path();
          sweep.experiment = fs::path(text).is_absolute() ? fs::path(text) : (base / text).lexically_normal();
          if (!fs::exists(sweep.experiment)) {
            fail(value.where, "experiment '" + text + "' does not exist (looked for " + sweep.experiment.string() +
                                  "); give the base experiment file, relative to this sweep file");
          }
        }
      } else if (key == "set") {
        for_each_param(key, value, [&](const ParamPath& param, const RawValue& leaf) {
          sweep.fixed.push_back({param, leaf.leaf, leaf.where});
        });
      } else if (key == "grid") {
        for_each_param(key, value, [&](const ParamPath& param, const RawValue& leaf) {
          if (!leaf.leaf.is_array() || leaf.leaf.empty()) {
            fail(leaf.where, "grid." + param.text() + " must be a non-empty list of values, e.g. [\"sgd\", \"adam\"]");
            return;
          }
          sweep.grid.push_back({param, std::vector<json>(leaf.leaf.begin(), leaf.leaf.end()), leaf.where});
        });
      } else if (key == "random") {
        random(value, sweep);
      } else if (key == "repeat") {
        repeat(value, sweep);
      } else if (key == "objective") {
        objective(value, sweep);
      } else if (key == "execution") {
        execution(value, sweep);
      } else if (key == "pruning") {
        pruning(value, sweep);
      } else {
        fail(value.where, "unknown key '" + key + "'" + did_you_mean(key, kTopLevelKeys) + "; a sweep file has " +
                              join(kTopLevelKeys));
      }
    }
    if (sweep.name.empty() && !root.table.count("name")) {
      fail({file_.string(), 1, 1}, "the sweep has no name; add name = \"...\" (it names the MLflow parent run)");
    } else if (sweep.name.empty()) {
      fail(root.table.at("name").where, "name must not be empty");
    }
    if (!root.table.count("experiment")) {
      fail({file_.string(), 1, 1}, "the sweep names no base experiment; add experiment = \"<file>.toml\"");
    }
    if (!root.table.count("grid") && !root.table.count("random") && !root.table.count("repeat")) {
      fail({file_.string(), 1, 1}, "the sweep has no axes: add a [grid], [random] or [repeat] table");
    }
    sweep.pruning.maximize = sweep.objective_maximize;
    check_duplicates(sweep);
    if (!errors_.empty()) {
      if (errors_.size() == 1) throw errors_.front();
      throw PetalErrors(std::move(errors_));
    }
    return sweep;
  }

 private:
  void fail(const SourceLocation& where, const std::string& message) { errors_.emplace_back(message, where); }

  std::string string_value(const std::string& key, const RawValue& value) {
    if (value.is_table || !value.leaf.is_string()) {
      fail(value.where, key + " must be a string");
      return "";
    }
    return value.leaf.get<std::string>();
  }

  // Calls `each` for every stage.key leaf of `section` ([set], [grid], [random] minus its own keys).
  template <typename Each>
  void for_each_param(const std::string& section, const RawValue& value, Each each,
                      const std::vector<std::string>& own_keys = {}) {
    if (!value.is_table) {
      fail(value.where, section + " must be a table of stage.key entries, e.g. [" + section + "] train.lr = ...");
      return;
    }
    for (const auto& [stage, table] : value.table) {
      if (std::find(own_keys.begin(), own_keys.end(), stage) != own_keys.end()) continue;
      if (!table.is_table) {
        fail(table.where, section + "." + stage + " must name a stage's parameter: write " + section + " entries as " +
                              "stage.key = ..." + (own_keys.empty() ? "" : " (this table's own keys are " + join(own_keys) + ")"));
        continue;
      }
      for (const auto& [key, leaf] : table.table) {
        const ParamPath param{stage, key};
        if (leaf.is_table && section != "random") {
          fail(leaf.where, section + "." + param.text() + " must be a value, not a table");
          continue;
        }
        each(param, leaf);
      }
    }
  }

  double number(const RawValue& where, const json& value, const std::string& what) {
    if (!value.is_number()) {
      fail(where.where, what + " must be a number");
      return 0;
    }
    return value.get<double>();
  }

  void random(const RawValue& value, SweepDefinition& sweep) {
    if (!value.is_table) {
      fail(value.where, "random must be a table");
      return;
    }
    if (const auto it = value.table.find("trials"); it != value.table.end()) {
      if (!it->second.leaf.is_number_integer() || it->second.leaf.get<std::int64_t>() < 1 ||
          it->second.leaf.get<std::int64_t>() > 10000) {
        fail(it->second.where, "random.trials must be an integer from 1 to 10000");
      } else {
        sweep.random_trials = it->second.leaf.get<int>();
      }
    } else {
      fail(value.where, "random needs trials = N (how many draws per grid point)");
    }
    if (const auto it = value.table.find("seed"); it != value.table.end()) {
      if (!it->second.leaf.is_number_integer() || it->second.leaf.get<std::int64_t>() < 0) {
        fail(it->second.where, "random.seed must be a non-negative integer");
      } else {
        sweep.random_seed = it->second.leaf.get<std::uint64_t>();
      }
    }
    for_each_param("random", value, [&](const ParamPath& param, const RawValue& leaf) {
      const std::string what = "random." + param.text();
      if (!leaf.is_table || leaf.table.size() != 1) {
        fail(leaf.where, what + " must be one distribution, e.g. { log_uniform = [1e-4, 1e-1] }; kinds: " +
                             join(kDistributionKinds));
        return;
      }
      const auto& [kind, spec] = *leaf.table.begin();
      Distribution d;
      d.param = param;
      d.where = leaf.where;
      if (kind == "choice") {
        d.kind = Distribution::Kind::Choice;
        if (!spec.leaf.is_array() || spec.leaf.empty()) {
          fail(spec.where, what + ".choice must be a non-empty list");
          return;
        }
        d.choices.assign(spec.leaf.begin(), spec.leaf.end());
      } else if (kind == "uniform" || kind == "log_uniform" || kind == "int_uniform") {
        d.kind = kind == "uniform" ? Distribution::Kind::Uniform
                 : kind == "log_uniform" ? Distribution::Kind::LogUniform : Distribution::Kind::IntUniform;
        if (!spec.leaf.is_array() || spec.leaf.size() != 2) {
          fail(spec.where, what + "." + kind + " must be [low, high]");
          return;
        }
        d.low = number(spec, spec.leaf[0], what + "." + kind + "[0]");
        d.high = number(spec, spec.leaf[1], what + "." + kind + "[1]");
        if (!(d.low <= d.high)) fail(spec.where, what + "." + kind + ": low must not exceed high");
        if (d.kind == Distribution::Kind::LogUniform && !(d.low > 0)) {
          fail(spec.where, what + ".log_uniform needs low > 0 (a log scale has no zero)");
        }
        if (d.kind == Distribution::Kind::IntUniform &&
            (!spec.leaf[0].is_number_integer() || !spec.leaf[1].is_number_integer())) {
          fail(spec.where, what + ".int_uniform bounds must be integers");
        } else if (d.kind == Distribution::Kind::IntUniform && (std::abs(d.low) > kIntBound || std::abs(d.high) > kIntBound)) {
          fail(spec.where, what + ".int_uniform bounds must lie within +-" + std::to_string(static_cast<long long>(kIntBound)) +
                               " (integer parameters are 32-bit)");
        }
      } else {
        fail(leaf.where, what + ": unknown distribution '" + kind + "'" + did_you_mean(kind, kDistributionKinds) +
                             "; kinds: " + join(kDistributionKinds));
        return;
      }
      sweep.random.push_back(std::move(d));
    }, {"trials", "seed"});
    if (sweep.random.empty() && sweep.random_trials > 0) {
      fail(value.where, "random has trials but no distributions; add e.g. train.lr = { log_uniform = [1e-4, 1e-1] }");
    }
  }

  void repeat(const RawValue& value, SweepDefinition& sweep) {
    if (!value.is_table) {
      fail(value.where, "repeat must be a table");
      return;
    }
    for (const auto& [key, leaf] : value.table) {
      if (key == "seeds") {
        sweep.seeds_where = leaf.where;
        if (!leaf.leaf.is_array() || leaf.leaf.empty()) {
          fail(leaf.where, "repeat.seeds must be a non-empty list of integers, e.g. [1, 2, 3]");
          continue;
        }
        for (const auto& seed : leaf.leaf) {
          if (!seed.is_number_integer()) fail(leaf.where, "repeat.seeds must hold integers");
          sweep.seeds.push_back(seed);
        }
      } else if (key == "keys") {
        if (!leaf.leaf.is_array() || leaf.leaf.empty()) {
          fail(leaf.where, "repeat.keys must be a non-empty list of \"stage.key\" strings");
          continue;
        }
        for (const auto& item : leaf.leaf) {
          const std::string text = item.is_string() ? item.get<std::string>() : "";
          const auto dot = text.find('.');
          if (dot == std::string::npos || dot == 0 || dot + 1 == text.size()) {
            fail(leaf.where, "repeat.keys entries must read \"stage.key\", e.g. \"train.seed\"");
            continue;
          }
          sweep.seed_keys.push_back({text.substr(0, dot), text.substr(dot + 1)});
        }
      } else {
        fail(leaf.where, "unknown key 'repeat." + key + "'" + did_you_mean(key, {"seeds", "keys"}) +
                             "; repeat has seeds and keys");
      }
    }
    if (!value.table.count("seeds")) fail(value.where, "repeat needs seeds = [...]");
  }

  void objective(const RawValue& value, SweepDefinition& sweep) {
    if (!value.is_table) {
      fail(value.where, "objective must be a table");
      return;
    }
    for (const auto& [key, leaf] : value.table) {
      if (key == "metric") {
        sweep.objective_metric = string_value("objective.metric", leaf);
        if (sweep.objective_metric.empty()) fail(leaf.where, "objective.metric must not be empty");
      } else if (key == "mode") {
        const std::string mode = string_value("objective.mode", leaf);
        if (mode != "max" && mode != "min") fail(leaf.where, "objective.mode must be \"max\" or \"min\"");
        sweep.objective_maximize = mode != "min";
      } else {
        fail(leaf.where, "unknown key 'objective." + key + "'" + did_you_mean(key, {"metric", "mode"}) +
                             "; objective has metric and mode");
      }
    }
  }

  void execution(const RawValue& value, SweepDefinition& sweep) {
    if (!value.is_table) {
      fail(value.where, "execution must be a table");
      return;
    }
    for (const auto& [key, leaf] : value.table) {
      if (key == "jobs") {
        if (!leaf.leaf.is_number_integer() || leaf.leaf.get<std::int64_t>() < 1 || leaf.leaf.get<std::int64_t>() > 256) {
          fail(leaf.where, "execution.jobs must be an integer from 1 to 256");
        } else {
          sweep.jobs = leaf.leaf.get<int>();
        }
      } else if (key == "fail_fast") {
        if (!leaf.leaf.is_boolean()) fail(leaf.where, "execution.fail_fast must be true or false");
        else sweep.fail_fast = leaf.leaf.get<bool>();
      } else {
        fail(leaf.where, "unknown key 'execution." + key + "'" + did_you_mean(key, {"jobs", "fail_fast"}) +
                             "; execution has jobs and fail_fast");
      }
    }
  }

  void pruning(const RawValue& value, SweepDefinition& sweep) {
    if (!value.is_table) {
      fail(value.where, "pruning must be a table");
      return;
    }
    PruningConfig& p = sweep.pruning;
    p.enabled = true;
    const std::vector<std::string> keys = {"enabled", "stage", "metric", "grace_epochs", "reduction_factor"};
    for (const auto& [key, leaf] : value.table) {
      if (key == "enabled") {
        if (!leaf.leaf.is_boolean()) fail(leaf.where, "pruning.enabled must be true or false");
        else p.enabled = leaf.leaf.get<bool>();
      } else if (key == "stage" || key == "metric") {
        const std::string text = string_value("pruning." + key, leaf);
        if (text.empty()) fail(leaf.where, "pruning." + key + " must not be empty");
        (key == "stage" ? p.stage : p.metric) = text;
      } else if (key == "grace_epochs" || key == "reduction_factor") {
        const std::int64_t low = key == "grace_epochs" ? 1 : 2;
        if (!leaf.leaf.is_number_integer() || leaf.leaf.get<std::int64_t>() < low || leaf.leaf.get<std::int64_t>() > 1000) {
          fail(leaf.where, "pruning." + key + " must be an integer from " + std::to_string(low) + " to 1000");
        } else {
          (key == "grace_epochs" ? p.grace_epochs : p.reduction_factor) = leaf.leaf.get<int>();
        }
      } else {
        fail(leaf.where, "unknown key 'pruning." + key + "'" + did_you_mean(key, keys) + "; pruning has " + join(keys));
      }
    }
  }

  // A parameter on two axes would make trials whose values silently override each other.
  void check_duplicates(const SweepDefinition& sweep) {
    std::map<std::string, SourceLocation> seen;
    const auto note = [&](const ParamPath& param, const SourceLocation& where) {
      const auto [it, fresh] = seen.emplace(param.text(), where);
      if (!fresh) fail(where, param.text() + " is already swept at " + it->second.to_string() + "; give each parameter one axis");
    };
    for (const auto& axis : sweep.grid) note(axis.param, axis.where);
    for (const auto& d : sweep.random) note(d.param, d.where);
    for (const auto& key : sweep.seed_keys) note(key, sweep.seeds_where);
    for (const auto& fixed : sweep.fixed) {
      if (seen.count(fixed.param.text())) {
        fail(fixed.where, "set." + fixed.param.text() + " is also swept at " + seen.at(fixed.param.text()).to_string() +
                              "; remove one of them");
      }
    }
  }

  fs::path file_;
  std::vector<PetalError> errors_;
};

}  // namespace

SweepDefinition load_sweep_definition(const fs::path& file) {
  if (!fs::exists(file)) {
    throw PetalError("sweep file " + file.string() + " does not exist");
  }
  const RawValue root = parse_toml_file(file);
  return Reader(file).run(root);
}

}  // namespace petal
