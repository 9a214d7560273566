#pragma once
// From a sweep definition to its list of trials: the grid's combinations (first axis slowest) ×
// `random.trials` draws × the repeat seeds (innermost). Random draws depend only on random.seed and
// the draw's number, so every grid point gets the same draws (paired comparisons) and a sweep
// expands to the same trials on every machine (own generator and conversions: no
// implementation-defined std:: distributions).
#include <string>
#include <vector>

#include "pipeline/config/experiment.h"
#include "pipeline/sweep/sweep_definition.h"

namespace petal {

struct TrialValue {
  ParamPath param;
  nlohmann::json value;
  SourceLocation where;  // the axis in the sweep file
  bool repeat = false;   // set by [repeat] (one seed may fill several keys)
};

struct Trial {
  int index = 0;
  std::string id;                  // "t00", "t01", ... (zero-padded to the same width)
  std::vector<TrialValue> values;  // the swept values, in axis order
  std::string label;               // "model=resnet18 optimizer=adam", for terminals and run names

  // What turns the base experiment into this trial: the sweep's [set] values, then its own.
  LoadOptions load_options(const SweepDefinition& sweep) const;
  nlohmann::json values_json() const;  // {"train.model": "resnet18", ...}
};

// The sweep's [set] values alone: the base experiment as every trial starts from it.
LoadOptions fixed_load_options(const SweepDefinition& sweep);

// The parameters [repeat] sets when it names no keys: every stage's `seed` except those of
// download and split, so repetitions vary initialisation and order, not the data split.
std::vector<ParamPath> default_seed_keys(const Experiment& base);

std::vector<Trial> expand_trials(const SweepDefinition& sweep, const std::vector<ParamPath>& seed_keys);

// One draw from `d` for draw number `draw` of a sweep seeded with `seed`.
nlohmann::json draw_value(const Distribution& d, std::uint64_t seed, std::uint64_t draw, std::size_t which);

}  // namespace petal
