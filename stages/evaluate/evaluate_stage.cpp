#include "stages/evaluate/evaluate_stage.h"

#include <set>

#include "pipeline/exec/worker_client.h"
#include "stages/evaluate/tta_modes.h"


namespace petal {

using nlohmann::json;

StageKind make_evaluate_stage() {
  StageKind kind;
  kind.name = "evaluate";
  kind.version = "evaluate/3";  // 3: model/data/model.pt is a copy, no longer a hard link into train
  kind.summary = "metrics, confusion matrices, misclassified images and Grad-CAM on held-out splits; MLflow model export";
  kind.default_needs = {"augment", "finetune"};
  kind.uses_torch = true;
  kind.params = {
      ParamSpec::strings("splits", {"test", "val"}, "the splits scored (train, val, test); Grad-CAM uses the first"),
      ParamSpec::integer("batch_size", 64, "images per forward pass").at_least(1).at_most(65536),
      ParamSpec::choice("tta", evaluate::tta_modes(), "none", evaluate::tta_help()),
      ParamSpec::integer("top_k", 5, "also report top-k accuracy when there are more than k classes").at_least(2).at_most(1000),
      ParamSpec::integer("gallery_images", 24, "misclassified images shown per split, most confident first; 0 = none")
          .at_least(0)
          .at_most(10000),
      ParamSpec::integer("gradcam_images", 4, "images explained with Grad-CAM; 0 = none").at_least(0).at_most(10000),
      ParamSpec::integer("gradcam_classes", 4, "classes explained per image (the most probable)").at_least(1).at_most(10),
      ParamSpec::integer("threads", 0, "LibTorch intra-op threads; 0 = the stage's CPU budget").at_least(0).at_most(1024),
      ParamSpec::choice("device", {"auto", "cpu", "cuda"}, "auto", "auto = cuda when this LibTorch has it"),
  };
  kind.check = [](const json& params) {
    std::vector<std::pair<std::string, std::string>> problems;
    const auto splits = params.at("splits").get<std::vector<std::string>>();
    if (splits.empty()) problems.emplace_back("splits", "must name at least one split, e.g. [\"test\"]");
    std::set<std::string> seen;
    for (const std::string& split : splits) {
      if (split != "train" && split != "val" && split != "test") {
        problems.emplace_back("splits", "may hold only \"train\", \"val\" and \"test\" (got \"" + split + "\")");
      } else if (!seen.insert(split).second) {
        problems.emplace_back("splits", "names \"" + split + "\" twice");
      }
    }
    return problems;
  };
  kind.run = [](StageContext& ctx) { run_in_worker(ctx, "evaluate", "petal-worker"); };
  return kind;
}

}  // namespace petal
