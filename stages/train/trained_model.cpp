#include "stages/train/trained_model.h"

#include <fstream>
#include <stdexcept>

#include "stages/train/models/model_zoo.h"
#include "stages/train/weights/state_dict_load.h"

namespace petal::train {

namespace fs = std::filesystem;
using nlohmann::json;

json head_to_json(const models::HeadSpec& head) {
  return {{"num_classes", head.num_classes}, {"hidden", head.hidden}, {"batch_norm", head.batch_norm}, {"dropout", head.dropout}};
}

models::HeadSpec head_from_json(const json& j) {
  models::HeadSpec head;
  head.num_classes = j.at("num_classes");
  head.hidden = j.at("hidden").get<std::vector<std::int64_t>>();
  head.batch_norm = j.at("batch_norm");
  head.dropout = j.at("dropout");
  return head;
}

fs::path model_json_dir(const fs::path& dir) {
  if (fs::exists(dir / "model.json")) return dir;
  if (fs::exists(dir / "data" / "model.json")) return dir / "data";
  throw std::runtime_error(dir.string() + " is not a petal model: it has neither model.json (a train or finetune "
                           "stage's output) nor data/model.json (a model exported by the evaluate stage)");
}

TrainedModel load_trained_model(const fs::path& dir) {
  const fs::path folder = model_json_dir(dir);
  TrainedModel model;
  std::ifstream in(folder / "model.json");
  try {
    model.description = json::parse(in);
    const json& d = model.description;
    if (d.value("format", 0) != 1) throw std::runtime_error("unsupported format " + d.value("format", json(0)).dump());
    model.spec.architecture = d.at("architecture");
    model.spec.head = head_from_json(d.at("head"));
    model.classes = d.at("classes").get<std::vector<std::string>>();
    const json& p = d.at("preprocessing");
    model.preprocessing.image_size = p.at("image_size");
    model.preprocessing.eval_resize = p.at("eval_resize");
    model.preprocessing.cache_short_side = p.at("cache_short_side");
    model.preprocessing.upscale = p.at("upscale");
    model.preprocessing.normalization.mean = p.at("mean");
    model.preprocessing.normalization.std = p.at("std");
    model.weights_file = folder / d.value("weights", "model.pt");
  } catch (const std::exception& e) {
    throw std::runtime_error((folder / "model.json").string() + ": " + e.what() +
                             " (written by another petal version? re-run the train stage)");
  }
  model.network = models::make_classifier(model.spec);
  const weights::StateDict state = weights::read_state_dict(model.weights_file);
  weights::load_state_dict(*model.network, state, {}, model.weights_file.string());
  model.network->eval();
  return model;
}

}  // namespace petal::train
