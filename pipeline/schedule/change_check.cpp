#include "pipeline/schedule/change_check.h"

#include "pipeline/cli/session.h"
#include "pipeline/util/sha256.h"
#include "stages/download/http_fetch.h"

namespace petal {

ChangeCheck check_for_changes(const cli::GlobalOptions& global, const cli::ExperimentOptions& experiment,
                              const ScheduleState& state) {
  ChangeCheck check;
  cli::ExperimentOptions options = experiment;
  std::vector<std::string> remote_changes;
  auto session = cli::Session::open(global, experiment);
  {
    for (const StageNode* node : session->graph.order()) {
      if (node->kind->name != "download") continue;
      const nlohmann::json params = node->config->params_json();
      if (params.at("source").get<std::string>() != "url") continue;
      const std::string url = params.at("url");
      const std::string validator = remote_validator(url);
      check.validators[url] = validator;
      // The validator as a plain token, so it passes --set unquoted and keys stay short.
      options.overrides.push_back(node->name() + ".revision=rev-" + sha256_hex(validator).substr(0, 16));
      const auto seen = state.validators.find(url);
      if (seen == state.validators.end() || seen->second != validator) remote_changes.push_back(url);
    }
  }
  // A URL source's revision is part of its key: plan the experiment with it. Without one (a local
  // folder) the experiment as loaded is the one to plan, so it is not loaded twice.
  if (options.overrides.size() != experiment.overrides.size()) session = cli::Session::open(global, options);
  const Plan plan = session->plan(false);
  std::vector<std::string> to_run;
  std::string first_reason;
  for (const StagePlan& stage : plan.stages) {
    if (stage.cached()) continue;
    to_run.push_back(stage.node->name());
    if (first_reason.empty()) {
      const auto reasons = explain_stage(stage, session->experiment.name, session->log, session->cache);
      first_reason = stage.node->name() + ": " + (reasons.empty() ? std::string("not cached") : reasons.front());
    }
  }
  check.overrides.assign(options.overrides.begin() + static_cast<std::ptrdiff_t>(experiment.overrides.size()),
                         options.overrides.end());
  check.changed = !to_run.empty();
  if (!check.changed) {
    check.reason = "no change";
    return check;
  }
  std::string stages;
  for (const auto& name : to_run) stages += (stages.empty() ? "" : ", ") + name;
  check.reason = (remote_changes.empty() ? std::string() : remote_changes.front() + " changed; ") + first_reason +
                 " (to run: " + stages + ")";
  return check;
}

}  // namespace petal
