#pragma once
#include <array>
#include <cstddef>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

namespace petal::augment {

// The augmentation ops, in the order they are applied to a training sample. The crop comes first
// so that every later op works on the output size (image_size x image_size), never on the larger
// cached image; photometric ops follow the geometric ones; random erasing comes last, as in
// torchvision, so erased pixels are not recoloured.
//
// This header knows nothing of OpenCV or TOML: petal's core includes it to validate overrides.
enum class Op : int {
  Crop,        // random resized crop to image_size; else the evaluation resize + centre crop
  HFlip,
  VFlip,
  Rotate,
  Translate,
  Scale,
  Elastic,
  Optical,     // barrel / pincushion
  Brightness,
  Contrast,
  Saturation,
  Hue,
  Blur,
  Noise,
  Erase,
};
constexpr std::size_t kOpCount = 15;

// What an op's magnitude means, its allowed range and the magnitude it has when a preset or an
// override does not give one.
struct OpInfo {
  Op op;
  const char* name;
  bool has_magnitude;
  double min_magnitude;
  double max_magnitude;
  double default_magnitude;
  const char* magnitude_help;
};

const std::array<OpInfo, kOpCount>& op_table();
const OpInfo& op_info(Op op);
std::optional<Op> find_op(const std::string& name);
std::string op_names();  // "crop, hflip, ..." for error messages

struct OpSetting {
  double probability = 0;  // chance that the op is applied to a sample, in [0, 1]
  double magnitude = 0;    // see OpInfo::magnitude_help; ignored by ops without a magnitude
};

// A named set of op settings. "none" has every probability 0 (then training samples get only the
// evaluation resize + centre crop).
struct Policy {
  std::string name = "none";
  std::array<OpSetting, kOpCount> ops;

  Policy();  // every op off, at its default magnitude
  OpSetting& operator[](Op op) { return ops[static_cast<std::size_t>(op)]; }
  const OpSetting& operator[](Op op) const { return ops[static_cast<std::size_t>(op)]; }
  bool active(Op op) const { return (*this)[op].probability > 0; }

  // {"name": ..., "ops": {"rotate": {"probability": 0.3, "magnitude": 15}, ...}}, every op listed.
  nlohmann::json to_json() const;
  // Ops missing from "ops" are off; throws std::invalid_argument naming the op and field.
  static Policy from_json(const nlohmann::json& json);
};

// "" when `value` is allowed for op.field ("probability" or "magnitude"), else the complaint, naming
// both: "rotate.magnitude must be in [0, 180] degrees (got 200)".
std::string check_setting(Op op, const std::string& field, double value);

}  // namespace petal::augment
