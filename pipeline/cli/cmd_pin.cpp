#include <cstdio>

#include "pipeline/cache/pins.h"
#include "pipeline/cli/commands.h"
#include "pipeline/cli/session.h"
#include "pipeline/util/error.h"
#include "pipeline/util/fs.h"

namespace petal::cli {

CLI::App* setup_pin(CLI::App& app, PinOptions& options) {
  CLI::App* command = app.add_subcommand("pin", "protect an experiment's current cache entries from petal gc");
  command->add_option("experiment", options.experiment.file, "experiment file whose current entries to pin")
      ->check(CLI::ExistingFile);
  command->add_option("--set", options.experiment.overrides, "override a value: --set train.epochs=5 (repeatable)")
      ->type_name("KEY=VALUE");
  command->add_option("--name", options.name, "the pin's name (default: the experiment's name)");
  command->add_flag("--list", options.list, "list pins");
  command->add_option("--remove", options.remove, "remove the pin NAME")->type_name("NAME");
  return command;
}

int run_pin(const GlobalOptions& global, const PinOptions& options) {
  const Project project = Project::locate(global.state_dir.empty() ? std::nullopt
                                                                   : std::optional<std::filesystem::path>(global.state_dir));
  Pins pins(project.pins_dir());
  if (options.list) {
    for (const auto& pin : pins.list()) {
      std::printf("%-24s %-20s %zu entries\n", pin.name.c_str(), pin.experiment.c_str(), pin.keys.size());
    }
    return 0;
  }
  if (!options.remove.empty()) {
    if (!pins.remove(options.remove)) throw PetalError("no pin named '" + options.remove + "' (see petal pin --list)");
    std::printf("petal: removed pin '%s'\n", options.remove.c_str());
    return 0;
  }
  if (options.experiment.file.empty()) throw PetalError("petal pin: give an experiment file, --list or --remove NAME");
  auto session = Session::open(global, options.experiment);
  const Plan plan = session->plan(false);
  Pin pin{options.name.empty() ? session->experiment.name : options.name, session->experiment.name, {}, now_ms()};
  std::size_t missing = 0;
  for (const auto& stage : plan.stages) {
    pin.keys.push_back(stage.key);
    missing += stage.cached() ? 0 : 1;
  }
  pins.save(pin);
  std::printf("petal: pinned %zu entries as '%s'", pin.keys.size(), pin.name.c_str());
  if (missing) std::printf(" (%zu not built yet: run the experiment to fill them)", missing);
  std::printf("\n");
  return 0;
}

}  // namespace petal::cli
