#include "pipeline/cli/commands.h"

namespace petal::cli {

void add_experiment_options(CLI::App& command, ExperimentOptions& options) {
  command.add_option("experiment", options.file, "experiment file (TOML), e.g. experiments/flowers5.toml")
      ->required()
      ->check(CLI::ExistingFile);
  command.add_option("--set", options.overrides, "override a value: --set train.epochs=5 (repeatable)")
      ->type_name("KEY=VALUE")
      ->allow_extra_args(false);
}

}  // namespace petal::cli
