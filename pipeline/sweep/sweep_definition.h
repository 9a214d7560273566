#pragma once
// A sweep file: a base experiment plus the axes along which its trials differ.
//
//   name = "flowers5-sweep"
//   experiment = "flowers5.toml"            # the base experiment, relative to this file
//   [set]                                   # the same override for every trial
//   train.epochs = 2
//   [grid]                                  # every combination of these values
//   train.model = ["resnet18", "mobilenet_v2"]
//   train.optimizer = ["sgd", "adam"]
//   [random]                                # `trials` draws per grid point, reproducible from `seed`
//   trials = 4
//   seed = 7
//   train.lr = { log_uniform = [1e-4, 1e-1] }      # also uniform, int_uniform, choice = [...]
//   [repeat]                                # each trial once per seed
//   seeds = [1, 2, 3]
//   keys = ["train.seed"]                   # default: the seed of every stage except download/split
//   [objective]                             # how trials are ranked
//   metric = "val_accuracy"                 # "stage.metric", or a bare name: the last stage reporting it
//   mode = "max"
//   [pruning]                               # stop poor trials early (successive halving, pruning.h)
//   stage = "train"                         # whose per-epoch metric is watched
//   metric = "val_accuracy"                 # mode: the objective's
//   grace_epochs = 1                        # rungs at 1, 3, 9, ... epochs
//   reduction_factor = 3
//   [execution]
//   jobs = 2                                # trials at once (the command line's --jobs wins)
//   fail_fast = false                       # true: a failed trial stops new trials from starting
#include <cstdint>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "pipeline/sweep/pruning.h"
#include "pipeline/util/error.h"

namespace petal {

// A parameter addressed as stage.key (e.g. "train.lr").
struct ParamPath {
  std::string stage;
  std::string key;
  std::string text() const { return stage + "." + key; }
};

struct GridAxis {
  ParamPath param;
  std::vector<nlohmann::json> values;  // at least one
  SourceLocation where;
};

struct Distribution {
  enum class Kind { Choice, Uniform, LogUniform, IntUniform };
  ParamPath param;
  Kind kind = Kind::Choice;
  std::vector<nlohmann::json> choices;  // Choice
  double low = 0, high = 0;             // the others: inclusive bounds (log_uniform: low > 0)
  SourceLocation where;
};

struct FixedValue {
  ParamPath param;
  nlohmann::json value;
  SourceLocation where;
};

struct SweepDefinition {
  std::filesystem::path file;
  std::string name;
  std::string description;
  std::filesystem::path experiment;  // the base experiment, resolved against the sweep file's folder
  SourceLocation experiment_where;
  std::vector<FixedValue> fixed;
  std::vector<GridAxis> grid;
  int random_trials = 0;  // 0: no random section
  std::uint64_t random_seed = 0;
  std::vector<Distribution> random;
  std::vector<nlohmann::json> seeds;      // empty: no repetition
  std::vector<ParamPath> seed_keys;       // empty with seeds: the default (see above)
  SourceLocation seeds_where;
  std::string objective_metric = "val_accuracy";
  bool objective_maximize = true;
  PruningConfig pruning;  // enabled by a [pruning] table
  int jobs = 0;  // 0: decided by the command line or the cores
  bool fail_fast = false;
};

// Reads and checks a sweep file. Problems are reported together, each with file:line:column and
// what is allowed; values are checked against the experiment's parameters later, when the trials
// are loaded (still pointing at this file).
SweepDefinition load_sweep_definition(const std::filesystem::path& file);

}  // namespace petal
