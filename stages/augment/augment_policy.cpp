#include "stages/augment/augment_policy.h"

#include <sstream>
#include <stdexcept>

namespace petal::augment {

using nlohmann::json;

namespace {

// Index = static_cast<int>(op): the table is in application order (see Op).
const std::array<OpInfo, kOpCount> kOps = {{
    {Op::Crop, "crop", true, 0.01, 1, 0.08,
     "the smallest crop area as a fraction of the image (aspect ratio 3/4..4/3)"},
    {Op::HFlip, "hflip", false, 0, 0, 0, "no magnitude"},
    {Op::VFlip, "vflip", false, 0, 0, 0, "no magnitude"},
    {Op::Rotate, "rotate", true, 0, 180, 15, "the largest rotation in degrees, either way"},
    {Op::Translate, "translate", true, 0, 0.5, 0.1, "the largest shift as a fraction of the image side"},
    {Op::Scale, "scale", true, 0, 0.9, 0.1, "the largest zoom change: a factor in [1-m, 1+m]"},
    {Op::Elastic, "elastic", true, 0, 0.25, 0.04, "the largest displacement as a fraction of the image side"},
    {Op::Optical, "optical", true, 0, 1, 0.3, "the largest radial distortion coefficient k, either sign"},
    {Op::Brightness, "brightness", true, 0, 1, 0.2, "a factor in [1-m, 1+m]"},
    {Op::Contrast, "contrast", true, 0, 1, 0.2, "a factor in [1-m, 1+m]"},
    {Op::Saturation, "saturation", true, 0, 1, 0.2, "a factor in [1-m, 1+m]"},
    {Op::Hue, "hue", true, 0, 0.5, 0.05, "the largest hue shift in turns of the colour wheel"},
    {Op::Blur, "blur", true, 0.1, 10, 1.5, "the largest Gaussian sigma in pixels (the smallest is 0.1)"},
    {Op::Noise, "noise", true, 0, 0.5, 0.03, "the largest noise standard deviation as a fraction of full scale"},
    {Op::Erase, "erase", true, 0.02, 1, 0.2, "the largest erased area as a fraction of the image (smallest 0.02)"},
}};

std::string number(double value) {
  std::ostringstream text;
  text << value;
  return text.str();
}

}  // namespace

const std::array<OpInfo, kOpCount>& op_table() { return kOps; }

const OpInfo& op_info(Op op) { return kOps[static_cast<std::size_t>(op)]; }

std::optional<Op> find_op(const std::string& name) {
  for (const auto& info : kOps) {
    if (name == info.name) return info.op;
  }
  return std::nullopt;
}

std::string op_names() {
  std::string names;
  for (const auto& info : kOps) names += (names.empty() ? "" : ", ") + std::string(info.name);
  return names;
}

Policy::Policy() {
  for (const auto& info : kOps) (*this)[info.op] = OpSetting{0, info.default_magnitude};
}

json Policy::to_json() const {
  json out_ops = json::object();
  for (const auto& info : kOps) {
    json setting = {{"probability", (*this)[info.op].probability}};
    if (info.has_magnitude) setting["magnitude"] = (*this)[info.op].magnitude;
    out_ops[info.name] = setting;
  }
  return json{{"name", name}, {"ops", out_ops}};
}

Policy Policy::from_json(const json& j) {
  Policy policy;
  policy.name = j.value("name", std::string("custom"));
  const json ops = j.value("ops", json::object());
  if (!ops.is_object()) throw std::invalid_argument("policy \"ops\" must be an object");
  for (const auto& [name, setting] : ops.items()) {
    const auto op = find_op(name);
    if (!op) throw std::invalid_argument("unknown augmentation op '" + name + "'; ops are: " + op_names());
    if (!setting.is_object()) throw std::invalid_argument(name + " must be a table of probability and magnitude");
    for (const auto& [field, value] : setting.items()) {
      if (!value.is_number()) throw std::invalid_argument(name + "." + field + " must be a number");
      const std::string complaint = check_setting(*op, field, value.get<double>());
      if (!complaint.empty()) throw std::invalid_argument(complaint);
      if (field == "probability") policy[*op].probability = value.get<double>();
      else policy[*op].magnitude = value.get<double>();
    }
  }
  return policy;
}

std::string check_setting(Op op, const std::string& field, double value) {
  const OpInfo& info = op_info(op);
  const std::string key = std::string(info.name) + "." + field;
  if (field == "probability") {
    if (!(value >= 0 && value <= 1)) return key + " must be in [0, 1] (got " + number(value) + ")";
    return "";
  }
  if (field == "magnitude") {
    if (!info.has_magnitude) return key + ": " + info.name + " has no magnitude, only a probability";
    if (!(value >= info.min_magnitude && value <= info.max_magnitude)) {
      return key + " must be in [" + number(info.min_magnitude) + ", " + number(info.max_magnitude) + "], " +
             info.magnitude_help + " (got " + number(value) + ")";
    }
    return "";
  }
  return key + ": unknown field '" + field + "'; an op has a probability" +
         (info.has_magnitude ? " and a magnitude" : "");
}

}  // namespace petal::augment
