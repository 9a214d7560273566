#include "stages/register/register_stage.h"

#include <fstream>

#include "pipeline/util/error.h"
#include "pipeline/util/sha256.h"

namespace petal {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// The metrics a registration can be judged by; all are written by the evaluate stage.
const std::vector<std::string>& promotion_metrics() {
  static const std::vector<std::string> names = {"test_f1",      "test_accuracy", "test_weighted_f1", "test_log_loss",
                                                 "val_f1",       "val_accuracy",  "val_weighted_f1",  "val_log_loss"};
  return names;
}

bool lower_is_better(const std::string& metric) { return metric.find("loss") != std::string::npos; }

json read_json(const fs::path& file) {
  std::ifstream in(file);
  if (!in) throw PetalError("cannot read " + file.string());
  return json::parse(in);
}

void run_register(StageContext& ctx) {
  const json& p = ctx.params;
  if (!ctx.tracking) {
    throw PetalError("register needs MLflow tracking, and this run is not tracked (tracking.enabled = false, "
                     "PETAL_TRACKING=off or --no-tracking); enable tracking, or set enabled = false in [" +
                     ctx.stage_name + "]");
  }
  std::string evaluate_stage;
  fs::path evaluate_dir;
  std::string dataset_digest;
  for (const auto& [name, dir] : ctx.inputs) {
    if (fs::exists(dir / "model" / "MLmodel")) {
      evaluate_stage = name;
      evaluate_dir = dir;
    }
    if (fs::exists(dir / "dataset.json")) dataset_digest = read_json(dir / "dataset.json").value("digest", "");
  }
  if (evaluate_dir.empty()) {
    throw PetalError("[" + ctx.stage_name + "] needs an evaluate stage among its inputs (an output with model/MLmodel); "
                     "check its `needs`");
  }

  ModelRegistration request;
  request.registered_model = p.at("model_name");
  request.artifact_path = evaluate_stage + "/model";
  request.local_model_dir = (evaluate_dir / "model").string();
  request.model_digest = sha256_file(evaluate_dir / "model" / "data" / "model.pt");
  request.metric = p.at("metric");
  request.higher_is_better = !lower_is_better(request.metric);
  request.margin = p.at("margin");
  request.description = p.at("description");
  const json metrics = read_json(evaluate_dir / "metrics.json");
  for (const auto& [name, value] : metrics.items()) {
    if (value.is_number()) request.metrics[name] = value.get<double>();
  }
  if (!request.metrics.count(request.metric)) {
    throw PetalError("[" + ctx.stage_name + "] metric = \"" + request.metric + "\" is not among the evaluate stage's "
                     "metrics (metrics.json); evaluate that split (evaluate.splits) or choose another metric");
  }
  if (!dataset_digest.empty()) request.tags["petal.dataset_digest"] = dataset_digest;
  if (const json model = read_json(evaluate_dir / "model" / "data" / "model.json"); model.contains("architecture")) {
    request.tags["petal.architecture"] = model.at("architecture").get<std::string>();
  }

  const RegistrationResult result = ctx.tracking->register_model(request);
  const json out = {{"model_name", request.registered_model},
                    {"version", result.version},
                    {"created", result.created},
                    {"alias", result.alias},
                    {"previous_champion", result.previous_champion},
                    {"previous_champion_metric", result.champion_metric ? json(*result.champion_metric) : json(nullptr)},
                    {"metric", request.metric},
                    {"value", request.metrics.at(request.metric)},
                    {"reason", result.reason},
                    {"source", result.source},
                    {"run_id", result.run_id},
                    {"model_digest", request.model_digest}};
  std::ofstream(ctx.output_dir / "registration.json") << out.dump(2) << "\n";
  ctx.report.artifact("registration.json");
  ctx.report.metric("model_version", std::stod(result.version));
  ctx.report.metric("promoted", result.alias == "champion" ? 1.0 : 0.0);
  ctx.report.note(request.registered_model + " v" + result.version + (result.created ? " registered" : " (already registered)") +
                  " as " + result.alias + ": " + result.reason);
}

}  // namespace

StageKind make_register_stage() {
  StageKind kind;
  kind.name = "register";
  kind.version = "register/1";
  kind.summary = "register the evaluated model in the MLflow Model Registry; champion only if it beats the champion";
  kind.default_needs = {"evaluate", "download"};
  kind.params = {
      ParamSpec::text("model_name", std::nullopt, "the registered model's name in the MLflow Model Registry"),
      ParamSpec::choice("metric", promotion_metrics(), "test_f1",
                        "the evaluate stage's metric that decides promotion (losses: lower is better)"),
      ParamSpec::real("margin", 0.0, "the champion is replaced only when the new model is better by more than this")
          .at_least(0),
      ParamSpec::text("description", "", "the model version's description"),
  };
  kind.check = [](const json& params) {
    std::vector<std::pair<std::string, std::string>> problems;
    if (params.at("model_name").get<std::string>().empty()) {
      problems.emplace_back("model_name", "must name the registered model, e.g. model_name = \"flowers5\"");
    }
    return problems;
  };
  kind.run = run_register;
  return kind;
}

}  // namespace petal
