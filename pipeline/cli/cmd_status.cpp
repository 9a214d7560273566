#include <cstdio>

#include "pipeline/cache/explain.h"
#include "pipeline/cli/commands.h"
#include "pipeline/cli/session.h"

namespace petal::cli {

CLI::App* setup_status(CLI::App& app, StatusOptions& options) {
  CLI::App* command = app.add_subcommand("status", "show which stages are cached and which would run");
  add_experiment_options(*command, options.experiment);
  command->add_flag("--explain", options.explain, "say why each stale stage is not cached");
  command->add_flag("--verify", options.verify, "re-hash cached outputs instead of trusting size and mtime");
  command->add_flag("--json", options.json, "print machine-readable JSON");
  return command;
}

namespace {
const char* state_name(const StagePlan& plan) {
  switch (plan.lookup.state) {
    case EntryState::Committed: return "cached";
    case EntryState::Damaged: return "damaged";
    case EntryState::Missing: return "stale";
  }
  return "?";
}
}  // namespace

int run_status(const GlobalOptions& global, const StatusOptions& options) {
  auto session = Session::open(global, options.experiment);
  const Plan plan = session->plan(options.verify);
  const std::string& name = session->experiment.name;
  if (options.json) {
    nlohmann::json stages = nlohmann::json::array();
    for (const auto& sp : plan.stages) {
      nlohmann::json entry = {{"stage", sp.node->name()}, {"kind", sp.node->kind->name}, {"key", sp.key},
                              {"state", state_name(sp)}};
      if (options.explain) entry["why"] = explain_stage(sp, name, session->log, session->cache);
      stages.push_back(entry);
    }
    std::printf("%s\n", nlohmann::json{{"experiment", name}, {"stages", stages}}.dump(2).c_str());
    return 0;
  }
  std::printf("experiment %s (%s); state in %s\n", name.c_str(), options.experiment.file.c_str(),
              session->project.state_dir.c_str());
  std::printf("  %-12s %-10s %-8s %s\n", "stage", "kind", "state", "key");
  for (const auto& sp : plan.stages) {
    std::printf("  %-12s %-10s %-8s %s\n", sp.node->name().c_str(), sp.node->kind->name.c_str(), state_name(sp),
                short_key(sp.key).c_str());
    if (options.explain) {
      for (const auto& reason : explain_stage(sp, name, session->log, session->cache)) {
        std::printf("      why: %s\n", reason.c_str());
      }
    }
  }
  std::printf("%zu of %zu stages cached\n", plan.cached_count(), plan.stages.size());
  return 0;
}

}  // namespace petal::cli
