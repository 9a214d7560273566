#include "stages/evaluate/predict_command.h"

#include <torch/torch.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "stages/evaluate/image_predictor.h"

namespace petal::evaluate {

namespace {

struct PredictArgs {
  std::filesystem::path model;
  int threads = 1;
  int batch_size = 32;
  std::string tta = "none";
  std::vector<std::filesystem::path> images;
};

bool parse_args(int argc, char** argv, PredictArgs& args) {
  for (int i = 2; i < argc; ++i) {
    const std::string arg = argv[i];
    const bool has_value = i + 1 < argc;
    if (arg == "--model" && has_value) args.model = argv[++i];
    else if (arg == "--threads" && has_value) args.threads = std::max(1, std::atoi(argv[++i]));
    else if (arg == "--batch-size" && has_value) args.batch_size = std::max(1, std::atoi(argv[++i]));
    else if (arg == "--tta" && has_value) args.tta = argv[++i];
    else if (arg.rfind("--", 0) == 0) return false;
    else args.images.emplace_back(arg);
  }
  return !args.model.empty() && !args.images.empty();
}

}  // namespace

int run_predict_command(int argc, char** argv) {
  PredictArgs args;
  if (!parse_args(argc, argv, args)) {
    std::fprintf(stderr, "usage: petal-worker predict --model DIR [--threads N] [--batch-size B] [--tta none|flip|crops|flip_crops] IMAGE...\n");
    return 2;
  }
  torch::set_num_threads(args.threads);
  train::TrainedModel model;
  try {
    model = train::load_trained_model(args.model);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
  const std::vector<FilePrediction> predictions = predict_files(model, args.images, args.batch_size, args.tta);
  nlohmann::json rows = nlohmann::json::array();
  for (std::size_t i = 0; i < predictions.size(); ++i) {
    nlohmann::json row = {{"file", args.images[i].string()}};
    if (predictions[i].error.empty()) row["probabilities"] = predictions[i].probabilities;
    else row["error"] = predictions[i].error;
    rows.push_back(std::move(row));
  }
  const nlohmann::json out = {
      {"architecture", model.spec.architecture}, {"classes", model.classes}, {"predictions", rows}};
  std::printf("%s\n", out.dump().c_str());
  return 0;
}

}  // namespace petal::evaluate
