#include "stages/train/model_names.h"

#include <cctype>
#include <map>

namespace petal {

const std::vector<std::string>& architecture_names() {
  static const std::vector<std::string> names = {"resnet18",           "resnet50",           "mobilenet_v2",
                                                 "efficientnet_b0",    "efficientnet_lite0", "efficientnet_lite1",
                                                 "efficientnet_lite2", "densenet121",        "vgg16_bn",
                                                 "convnext_tiny",      "vit_b_16",           "maxvit_t",
                                                 "inception_v3",       "small_cnn"};
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

bool is_efficientnet_lite(const std::string& architecture) {
  return architecture == "efficientnet_lite0" || architecture == "efficientnet_lite1" ||
         architecture == "efficientnet_lite2";
}

std::string default_normalization(const std::string& architecture) {
  return is_efficientnet_lite(architecture) || architecture == "inception_v3" ? "inception" : "imagenet";
}

namespace {

int conv_output(int size, int kernel, int stride, int padding) { return (size + 2 * padding - kernel) / stride + 1; }

// inception_v3's Mixed_6e side for `size` px inputs: valid 3x3 convs and 3x3/2 max pools.
int inception_mixed_6e_side(int size) {
  int s = conv_output(size, 3, 2, 0);  // Conv2d_1a_3x3
  s = conv_output(s, 3, 1, 0);          // Conv2d_2a_3x3 (2b keeps the size)
  s = conv_output(s, 3, 2, 0);          // maxpool1
  s = conv_output(s, 3, 1, 0);          // Conv2d_4a_3x3 (3b is 1x1)
  s = conv_output(s, 3, 2, 0);          // maxpool2
  return conv_output(s, 3, 2, 0);       // Mixed_6a
}

}  // namespace

std::string image_size_problem(const std::string& architecture, int image_size, bool auxiliary_trains) {
  const std::string size = std::to_string(image_size);
  if (architecture == "vit_b_16") {
    if (image_size % 16 != 0) return "vit_b_16 needs an image_size that is a multiple of 16 (its patch size), got " + size + "; 224 is its native size";
    return "";
  }
  if (architecture == "maxvit_t") {
    int side = conv_output(image_size, 3, 2, 1);  // the stem
    for (int stage = 0; stage < 4; ++stage) {
      side = conv_output(side, 3, 2, 1);
      if (side < 7 || side % 7 != 0) {
        return "maxvit_t needs every stage's map to split into 7x7 partitions (an image_size that is a multiple of "
               "224), got " + size + ": stage " + std::to_string(stage) + " would be " + std::to_string(side) + " px";
      }
    }
    return "";
  }
  if (architecture == "inception_v3") {
    if (image_size < 75) return "inception_v3 needs an image_size of at least 75, got " + size + "; 299 is its native size";
    if (auxiliary_trains && inception_mixed_6e_side(image_size) < 17) {
      return "inception_v3 trains its auxiliary classifier on a 17x17 Mixed_6e map, which needs an image_size of at "
             "least 299, got " + size + "; raise augment.image_size, or keep AuxLogits frozen "
             "(finetune.unfreeze_from = \"Mixed_7a\", or train the head only)";
    }
    return "";
  }
  return "";
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
      {"vit_b_16", {"vit_b_16-c867db91.pth", "torchvision-vit-legacy"}},
      {"maxvit_t", {"maxvit_t-bc5ab103.pth", "torchvision"}},
      {"inception_v3", {"inception_v3_google-0cc3c7bd.pth", "torchvision"}},
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
