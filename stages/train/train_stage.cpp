#include "stages/train/train_stage.h"

#include <fstream>

#include "pipeline/exec/worker_client.h"
#include "pipeline/util/error.h"
#include "stages/train/model_names.h"
#include "stages/train/pretrained_fetch.h"
#include "stages/train/train_params.h"

namespace petal {

using nlohmann::json;

namespace {

// The core resolves where the initial weights are (downloading ImageNet files once, outside the
// stage cache) so the worker only reads local files.
json initial_weights(const StageContext& ctx) {
  const std::string source = ctx.params.at("weights").get<std::string>();
  const std::string model = ctx.params.at("model").get<std::string>();
  if (source == "none") return json{{"file", ""}, {"key_format", "torchvision"}};
  const auto published = imagenet_weights(model);
  if (source == "file") {
    // A local copy of a published file may use its old key names (densenet121, vit_b_16): renamed
    // as for the download. The renames leave keys in today's layout (and petal's own files) alone.
    return json{{"file", ctx.params.at("weights_file").get<std::string>()},
                {"key_format", published ? published->key_format : "torchvision"}};
  }
  if (!published) throw PetalError("no ImageNet weights are published for " + model);
  std::ofstream log(ctx.log_file, std::ios::app);
  const auto path = fetch_pretrained(*published, ctx.params.at("weights_url").get<std::string>(),
                                     [&log](const std::string& line) { log << line << "\n" << std::flush; }, ctx.cancelled);
  return json{{"file", path.string()}, {"key_format", published->key_format}};
}

void run_torch_stage(StageContext& ctx, const std::string& kind, const json& extra) {
  json params = ctx.params;
  params["resolved"] = extra;
  StageContext worker_ctx{ctx.stage_name, params,       ctx.inputs,    ctx.output_dir,
                          ctx.log_file,   ctx.base_dir, ctx.cancelled, ctx.report};
  worker_ctx.threads = ctx.threads;
  worker_ctx.resume_dir = ctx.resume_dir;
  worker_ctx.data_parallel = ctx.data_parallel;
  run_in_worker(worker_ctx, kind, "petal-worker", WorkerParallelism::DataParallel);
}

}  // namespace

StageKind make_train_stage() {
  StageKind kind;
  kind.name = "train";
  kind.version = "train/3";
  kind.summary = "train a network (by default: ImageNet backbone frozen, new head) on the augmented images";
  kind.default_needs = {"augment"};
  kind.uses_torch = true;
  kind.params = train_param_specs(TrainPhase::Train);
  kind.check = [](const json& params) { return check_train_params(params, TrainPhase::Train); };
  kind.external_inputs = [](const json& params) {
    std::vector<ExternalInput> inputs;
    if (params.at("weights").get<std::string>() == "file") inputs.push_back({"weights_file", params.at("weights_file").get<std::string>()});
    return inputs;
  };
  kind.run = [](StageContext& ctx) { run_torch_stage(ctx, "train", json{{"weights", initial_weights(ctx)}}); };
  return kind;
}

StageKind make_finetune_stage() {
  StageKind kind;
  kind.name = "finetune";
  kind.version = "finetune/3";
  kind.summary = "fine-tune the trained network's deeper blocks with layer-wise rates and a cyclical schedule";
  kind.default_needs = {"augment", "train"};
  kind.uses_torch = true;
  kind.params = train_param_specs(TrainPhase::Finetune);
  kind.check = [](const json& params) { return check_train_params(params, TrainPhase::Finetune); };
  kind.run = [](StageContext& ctx) { run_torch_stage(ctx, "finetune", json::object()); };
  return kind;
}

}  // namespace petal
