#pragma once
// A trained model as the train and finetune stages write it, read back for evaluation and
// prediction: model.json (architecture, head, classes, preprocessing) + model.pt (state dict).
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "stages/augment/normalize.h"
#include "stages/train/models/classifier.h"

namespace petal::train {

// How an image becomes the network's input at evaluation time, exactly as the loader's
// evaluation view does it: decode with the short side at cache_short_side (smaller images kept
// unless upscale), resize the short side to eval_resize and centre crop image_size, normalise.
struct Preprocessing {
  int image_size = 224;
  int eval_resize = 256;
  int cache_short_side = 256;
  bool upscale = false;
  augment::Normalization normalization = augment::Normalization::imagenet();
};

struct TrainedModel {
  models::ModelSpec spec;
  std::vector<std::string> classes;
  Preprocessing preprocessing;
  nlohmann::json description;  // model.json as written
  models::Classifier network;  // weights loaded, in eval mode, on the CPU
  std::filesystem::path weights_file;
};

nlohmann::json head_to_json(const models::HeadSpec& head);
models::HeadSpec head_from_json(const nlohmann::json& json);

// The folder holding model.json: `dir` itself (a train/finetune output) or dir/data (an MLflow
// model exported by the evaluate stage). Throws std::runtime_error naming what is missing.
std::filesystem::path model_json_dir(const std::filesystem::path& dir);

// Reads model.json and model.pt from a train/finetune output or an exported MLflow model folder,
// builds the network and loads its weights strictly. Throws std::runtime_error naming the file.
TrainedModel load_trained_model(const std::filesystem::path& dir);

}  // namespace petal::train
