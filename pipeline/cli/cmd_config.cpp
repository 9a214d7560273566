#include <cstdio>

#include "pipeline/cli/commands.h"
#include "pipeline/config/experiment.h"
#include "pipeline/dag/graph.h"

namespace petal::cli {

CLI::App* setup_config(CLI::App& app, ConfigOptions& options) {
  CLI::App* command = app.add_subcommand("config", "print the fully resolved experiment (extends, --set, defaults)");
  add_experiment_options(*command, options.experiment);
  command->add_flag("--json", options.json, "print JSON instead of canonical TOML");
  return command;
}

int run_config(const GlobalOptions&, const ConfigOptions& options) {
  const StageRegistry& registry = builtin_registry();
  const Experiment experiment =
      load_experiment(options.experiment.file, registry, LoadOptions{options.experiment.overrides});
  Graph::build(experiment, registry);  // the graph must be valid too
  const std::string text = options.json ? experiment_to_json(experiment) : experiment_to_toml(experiment);
  std::fwrite(text.data(), 1, text.size(), stdout);
  return 0;
}

}  // namespace petal::cli
