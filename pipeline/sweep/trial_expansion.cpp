#include "pipeline/sweep/trial_expansion.h"

#include <cmath>
#include <cstdio>
#include <map>

namespace petal {

using nlohmann::json;

namespace {

// SplitMix64: a small, well-mixed generator whose output is the same everywhere.
std::uint64_t mix(std::uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

double unit_interval(std::uint64_t bits) { return static_cast<double>(bits >> 11) * 0x1.0p-53; }  // [0, 1)

// Four significant digits: a learning rate of 0.0012345678 is logged and shown as 0.001235.
double round_significant(double value) {
  if (value == 0 || !std::isfinite(value)) return value;
  char text[32];
  std::snprintf(text, sizeof text, "%.4g", value);
  return std::strtod(text, nullptr);
}

std::string value_text(const json& value) {
  if (value.is_string()) return value.get<std::string>();
  return value.dump();
}

}  // namespace

json draw_value(const Distribution& d, std::uint64_t seed, std::uint64_t draw, std::size_t which) {
  const std::uint64_t bits = mix(mix(mix(seed) ^ draw) ^ (static_cast<std::uint64_t>(which) * 0x632be59bd9b4e019ULL));
  const double u = unit_interval(bits);
  switch (d.kind) {
    case Distribution::Kind::Choice:
      return d.choices[static_cast<std::size_t>(u * static_cast<double>(d.choices.size()))];
    case Distribution::Kind::Uniform:
      return round_significant(d.low + u * (d.high - d.low));
    case Distribution::Kind::LogUniform:
      return round_significant(std::exp(std::log(d.low) + u * (std::log(d.high) - std::log(d.low))));
    case Distribution::Kind::IntUniform: {
      const auto low = static_cast<std::int64_t>(d.low), high = static_cast<std::int64_t>(d.high);
      return low + static_cast<std::int64_t>(u * static_cast<double>(high - low + 1));
    }
  }
  return nullptr;
}

std::vector<ParamPath> default_seed_keys(const Experiment& base) {
  std::vector<ParamPath> keys;
  for (const auto& stage : base.stages) {
    if (stage.kind == "download" || stage.kind == "split") continue;
    if (stage.params.count("seed")) keys.push_back({stage.name, "seed"});
  }
  return keys;
}

std::vector<Trial> expand_trials(const SweepDefinition& sweep, const std::vector<ParamPath>& seed_keys) {
  // Grid points: an odometer over the axes, the last axis fastest.
  std::vector<std::vector<TrialValue>> points = {{}};
  for (const auto& axis : sweep.grid) {
    std::vector<std::vector<TrialValue>> next;
    for (const auto& point : points) {
      for (const auto& value : axis.values) {
        auto extended = point;
        extended.push_back({axis.param, value, axis.where});
        next.push_back(std::move(extended));
      }
    }
    points = std::move(next);
  }
  std::vector<std::vector<TrialValue>> draws = {{}};
  if (sweep.random_trials > 0) {
    draws.clear();
    for (int draw = 0; draw < sweep.random_trials; ++draw) {
      std::vector<TrialValue> values;
      for (std::size_t i = 0; i < sweep.random.size(); ++i) {
        const Distribution& d = sweep.random[i];
        values.push_back({d.param, draw_value(d, sweep.random_seed, static_cast<std::uint64_t>(draw), i), d.where});
      }
      draws.push_back(std::move(values));
    }
  }
  std::vector<std::vector<TrialValue>> seeds = {{}};
  if (!sweep.seeds.empty()) {
    seeds.clear();
    for (const auto& seed : sweep.seeds) {
      std::vector<TrialValue> values;
      for (const auto& key : seed_keys) values.push_back({key, seed, sweep.seeds_where, true});
      seeds.push_back(std::move(values));
    }
  }

  // Labels use the bare key when no two swept parameters share it.
  std::map<std::string, int> key_uses;
  for (const auto& axis : sweep.grid) ++key_uses[axis.param.key];
  for (const auto& d : sweep.random) ++key_uses[d.param.key];
  for (const auto& key : seed_keys) ++key_uses[key.key];

  std::vector<Trial> trials;
  const std::size_t total = points.size() * draws.size() * seeds.size();
  const int width = std::max(2, static_cast<int>(std::to_string(total == 0 ? 0 : total - 1).size()));
  for (const auto& point : points) {
    for (const auto& draw : draws) {
      for (const auto& seed : seeds) {
        Trial trial;
        trial.index = static_cast<int>(trials.size());
        char id[32];
        std::snprintf(id, sizeof id, "t%0*d", width, trial.index);
        trial.id = id;
        for (const auto* part : {&point, &draw, &seed}) trial.values.insert(trial.values.end(), part->begin(), part->end());
        std::string label;
        bool seed_shown = false;
        for (const auto& v : trial.values) {
          const bool is_seed = v.repeat;
          if (is_seed && seed_shown) continue;  // one seed value, however many keys carry it
          seed_shown = seed_shown || is_seed;
          const std::string name = is_seed ? "seed" : key_uses[v.param.key] > 1 ? v.param.text() : v.param.key;
          label += (label.empty() ? "" : " ") + name + "=" + value_text(v.value);
        }
        trial.label = label;
        trials.push_back(std::move(trial));
      }
    }
  }
  return trials;
}

LoadOptions fixed_load_options(const SweepDefinition& sweep) {
  LoadOptions options;
  for (const auto& fixed : sweep.fixed) options.values.push_back({{fixed.param.stage, fixed.param.key}, fixed.value, fixed.where});
  return options;
}

LoadOptions Trial::load_options(const SweepDefinition& sweep) const {
  LoadOptions options = fixed_load_options(sweep);
  for (const auto& v : values) options.values.push_back({{v.param.stage, v.param.key}, v.value, v.where});
  return options;
}

json Trial::values_json() const {
  json out = json::object();
  for (const auto& v : values) out[v.param.text()] = v.value;
  return out;
}

}  // namespace petal
