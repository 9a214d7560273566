#include "stages/train/model_names.h"

#include <cctype>
#include <map>

namespace petal {

const std::vector<std::string>& architecture_names() {
  static const std::vector<std::string> names = {"resnet18",        "resnet50",           "mobilenet_v2",
                                                 "efficientnet_b0", "efficientnet_lite0", "densenet121",
                                                 "vgg16_bn",        "convnext_tiny",      "small_cnn"};
  return names;
}

std::string architecture_list() {
  std::string list;
  for (const std::string& name : architecture_names()) list += (list.empty() ? "" : ", ") + name;
  return list;
}

std::string sha256_prefix_of(const std::string& file_name) {
  const std::string stem = file_name.substr(0, file_name.find('.'));
  const auto dash = stem.rfind('-');
  if (dash == std::string::npos) return "";
  const std::string digits = stem.substr(dash + 1);
  if (digits.size() < 6) return "";
  for (const char c : digits) {
    if (!std::isxdigit(static_cast<unsigned char>(c)) || std::isupper(static_cast<unsigned char>(c))) return "";
  }
  return digits;
}

std::string default_normalization(const std::string& architecture) {
  return architecture == "efficientnet_lite0" ? "inception" : "imagenet";
}

std::optional<PretrainedWeights> imagenet_weights(const std::string& architecture) {
  // torchvision 0.14's IMAGENET1K_V1 weights (the ones its `pretrained=True` meant).
  static const std::map<std::string, std::pair<std::string, std::string>> files = {
      {"resnet18", {"resnet18-f37072fd.pth", "torchvision"}},
      {"resnet50", {"resnet50-0676ba61.pth", "torchvision"}},
      {"mobilenet_v2", {"mobilenet_v2-b0353104.pth", "torchvision"}},
      {"efficientnet_b0", {"efficientnet_b0_rwightman-3dd342df.pth", "torchvision"}},
      {"densenet121", {"densenet121-a639ec97.pth", "torchvision-densenet-legacy"}},
      {"vgg16_bn", {"vgg16_bn-6c64b313.pth", "torchvision"}},
      {"convnext_tiny", {"convnext_tiny-983f1562.pth", "torchvision"}},
  };
  const auto it = files.find(architecture);
  if (it == files.end()) return std::nullopt;
  PretrainedWeights weights;
  weights.file_name = it->second.first;
  weights.url = "https://download.pytorch.org/models/" + weights.file_name;
  weights.sha256_prefix = sha256_prefix_of(weights.file_name);
  weights.key_format = it->second.second;
  return weights;
}

}  // namespace petal
