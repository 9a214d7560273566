#include "stages/shell/shell_stage.h"

#include <cctype>

#include "pipeline/util/error.h"
#include "pipeline/util/fs.h"
#include "pipeline/util/subprocess.h"

namespace petal {

using nlohmann::json;
namespace fs = std::filesystem;

namespace {

std::string env_name(const std::string& stage) {
  std::string out = "PETAL_IN_";
  for (char c : stage) out += std::isalnum(static_cast<unsigned char>(c)) ? static_cast<char>(std::toupper(c)) : '_';
  return out;
}

void run_shell(StageContext& ctx) {
  SubprocessSpec spec;
  spec.argv = {"/bin/sh", "-c", ctx.params.at("command").get<std::string>()};
  spec.working_dir = ctx.base_dir;
  spec.output_file = ctx.log_file;
  const fs::path metrics_file = ctx.log_file.parent_path() / "metrics.json";
  spec.extra_env["PETAL_OUT"] = ctx.output_dir.string();
  spec.extra_env["PETAL_STAGE"] = ctx.stage_name;
  spec.extra_env["PETAL_METRICS"] = metrics_file.string();
  for (const auto& [name, dir] : ctx.inputs) spec.extra_env[env_name(name)] = dir.string();

  const SubprocessResult result = run_subprocess(spec, ctx.cancelled);
  for (const auto& artifact : ctx.params.at("artifacts")) {
    const std::string relative = artifact.get<std::string>();
    if (result.exit_code == 0 && result.signal == 0 && !stat_path(ctx.output_dir / relative)) {
      throw PetalError("artifacts names " + relative + ", but the command did not write $PETAL_OUT/" + relative, {},
                       kExitStageFailed);
    }
    ctx.report.artifact(relative);
  }
  if (result.cancelled) throw StageCancelled();
  if (result.signal != 0 || result.exit_code != 0) {
    throw PetalError("command failed (" + result.describe() + "); its output is in the stage log below",
                     {}, kExitStageFailed);
  }
  if (stat_path(metrics_file)) {
    json metrics;
    try {
      metrics = json::parse(read_text_file(metrics_file));
    } catch (const std::exception& e) {
      throw PetalError("$PETAL_METRICS must hold a JSON object of numbers: " + std::string(e.what()), {},
                       kExitStageFailed);
    }
    if (!metrics.is_object()) throw PetalError("$PETAL_METRICS must hold a JSON object of numbers", {}, kExitStageFailed);
    for (const auto& [name, value] : metrics.items()) {
      if (value.is_number()) {
        ctx.report.metric(name, value.get<double>());
      } else if (value.is_array()) {  // a series: [[step, value], ...]
        for (const auto& point : value) {
          if (!point.is_array() || point.size() != 2 || !point[0].is_number_integer() || !point[1].is_number()) {
            throw PetalError("$PETAL_METRICS: series '" + name + "' must be a list of [step, value] pairs", {},
                             kExitStageFailed);
          }
          ctx.report.metric(name, point[1].get<double>(), point[0].get<std::int64_t>());
        }
      } else {
        throw PetalError("$PETAL_METRICS: metric '" + name + "' is neither a number nor a list of [step, value]", {},
                         kExitStageFailed);
      }
    }
  }
}

}  // namespace

StageKind make_shell_stage() {
  StageKind kind;
  kind.name = "shell";
  kind.version = "shell/1";
  kind.summary = "a command of your own, cached like any stage";
  kind.params = {
      ParamSpec::text("command", std::nullopt, "run by /bin/sh; writes its outputs to $PETAL_OUT"),
      ParamSpec::paths("deps", {}, "files or folders whose content is part of the key (scripts, data)"),
      ParamSpec::strings("artifacts", {}, "files or folders of $PETAL_OUT to log to MLflow as artifacts"),
  };
  kind.external_inputs = [](const json& params) {
    std::vector<ExternalInput> inputs;
    for (const auto& dep : params.at("deps")) {
      inputs.push_back({"deps", dep.get<std::string>(), "deps[" + std::to_string(inputs.size()) + "]"});
    }
    return inputs;
  };
  kind.run = run_shell;
  return kind;
}

}  // namespace petal
