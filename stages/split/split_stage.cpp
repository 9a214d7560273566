#include "stages/split/split_stage.h"

#include <cmath>
#include <sstream>

#include "pipeline/exec/worker_client.h"

namespace petal {

using nlohmann::json;

StageKind make_split_stage() {
  StageKind kind;
  kind.name = "split";
  kind.version = "split/2";
  kind.summary = "check every image and split into train/val/test (stratified, official Oxford-102, or by folders)";
  kind.default_needs = {"download"};
  kind.params = {
      ParamSpec::choice("method", {"auto", "stratified", "oxford102", "folders"}, "auto",
                        "auto: oxford102 for a flowers102 download, folders when the paths start with "
                        "train/valid/test, else stratified"),
      ParamSpec::reals("ratios", std::vector<double>{0.8, 0.1, 0.1}, "train, val and test fractions (stratified)")
          .at_least(0)
          .at_most(1)
          .exactly(3),
      ParamSpec::integer("seed", 42, "seed of the shuffle (stratified)").at_least(0),
      ParamSpec::boolean("stratify", true, "keep each class's proportions in every split (stratified)"),
      ParamSpec::choice("conflicts", {"drop", "keep-first"}, "drop",
                        "identical images under different labels: drop them all, or keep the first by path"),
      ParamSpec::boolean("check_images", true, "decode every image and exclude unreadable or corrupt ones"),
      ParamSpec::integer("samples_per_class", 6, "images per class in samples.png").at_least(1).at_most(32),
  };
  kind.check = [](const json& params) {
    std::vector<std::pair<std::string, std::string>> problems;
    const auto ratios = params.at("ratios").get<std::vector<double>>();
    const double sum = ratios[0] + ratios[1] + ratios[2];
    if (std::fabs(sum - 1.0) > 1e-6) {
      std::ostringstream text;
      text << "must sum to 1 (got " << sum << ")";
      problems.emplace_back("ratios", text.str());
    }
    if (ratios[0] <= 0) problems.emplace_back("ratios", "must give the train split a fraction > 0");
    return problems;
  };
  kind.run = [](StageContext& ctx) { run_in_worker(ctx, "split", "petal-data-worker"); };
  return kind;
}

}  // namespace petal
