#include "stages/augment/augment_config.h"

#include <fstream>
#include <stdexcept>

namespace petal::augment {

using nlohmann::json;

AugmentSettings AugmentSettings::from_params(const json& params) {
  AugmentSettings s;
  s.policy = Policy::from_json(params.at("resolved").at("policy"));
  s.seed = params.at("seed").get<std::uint64_t>();
  s.image_size = params.at("image_size").get<int>();
  const int resize = params.at("eval_resize").get<int>();
  s.eval_resize = resize > 0 ? resize : default_eval_resize(s.image_size);
  const int cache = params.at("cache_short_side").get<int>();
  s.cache_short_side = cache > 0 ? cache : s.eval_resize;
  s.upscale = params.at("upscale").get<bool>();
  return s;
}

json AugmentSettings::to_json() const {
  return json{{"format", 1},
              {"policy", policy.to_json()},
              {"seed", seed},
              {"image_size", image_size},
              {"eval_resize", eval_resize},
              {"cache_short_side", cache_short_side},
              {"upscale", upscale},
              {"colour_order", "RGB"}};
}

AugmentSettings AugmentSettings::from_json(const json& j) {
  if (j.value("format", 0) != 1) throw std::runtime_error("augment.json: unsupported format");
  AugmentSettings s;
  s.policy = Policy::from_json(j.at("policy"));
  s.seed = j.at("seed").get<std::uint64_t>();
  s.image_size = j.at("image_size").get<int>();
  s.eval_resize = j.at("eval_resize").get<int>();
  s.cache_short_side = j.at("cache_short_side").get<int>();
  s.upscale = j.at("upscale").get<bool>();
  return s;
}

void AugmentSettings::write(const std::filesystem::path& dir) const {
  std::ofstream(dir / "augment.json") << to_json().dump(2) << "\n";
}

AugmentSettings AugmentSettings::read(const std::filesystem::path& dir) {
  std::ifstream in(dir / "augment.json");
  if (!in) throw std::runtime_error("cannot read " + (dir / "augment.json").string() + " (an augment stage's output)");
  return from_json(json::parse(in));
}

}  // namespace petal::augment
