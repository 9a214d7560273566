#pragma once
#include <array>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "stages/augment/augment_policy.h"

namespace petal::augment {

// The standard evaluation resize: 256 for 224, the same proportion for other sizes.
inline int default_eval_resize(int image_size) {
  return static_cast<int>(std::lround(image_size * 256.0 / 224.0));
}

// Everything the loader needs to reproduce the augment stage's choices, stored as augment.json in
// the stage's output. Sizes are resolved (no "0 = auto" left).
struct AugmentSettings {
  Policy policy;
  std::uint64_t seed = 0;
  int image_size = 224;        // output side of every sample (square)
  int eval_resize = 256;       // evaluation: short side resized to this, then centre crop image_size
  int cache_short_side = 256;  // short side of the cached images (smaller ones kept unless upscale)
  bool upscale = false;

  // From the augment stage's params (with "resolved" added by the core: see augment_stage.cpp).
  static AugmentSettings from_params(const nlohmann::json& params);
  nlohmann::json to_json() const;  // also records the colour order, for readers
  static AugmentSettings from_json(const nlohmann::json& json);
  void write(const std::filesystem::path& dir) const;           // dir/augment.json
  static AugmentSettings read(const std::filesystem::path& dir);  // throws std::runtime_error
};

}  // namespace petal::augment
