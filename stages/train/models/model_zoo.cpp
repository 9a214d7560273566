#include "stages/train/models/model_zoo.h"

#include <stdexcept>

#include "stages/train/model_names.h"

namespace petal::models {

Classifier make_classifier(const ModelSpec& spec) {
  if (spec.head.num_classes < 1) throw std::invalid_argument("the head needs at least one class");
  const std::string& name = spec.architecture;
  if (name == "resnet18") return make_resnet(18, spec.head);
  if (name == "resnet50") return make_resnet(50, spec.head);
  if (name == "vgg16_bn") return make_vgg16_bn(spec.head);
  if (name == "densenet121") return make_densenet121(spec.head);
  if (name == "mobilenet_v2") return make_mobilenet_v2(spec.head);
  if (name == "efficientnet_b0") return make_efficientnet_b0(spec.head);
  if (name == "efficientnet_lite0") return make_efficientnet_lite(0, spec.head);
  if (name == "efficientnet_lite1") return make_efficientnet_lite(1, spec.head);
  if (name == "efficientnet_lite2") return make_efficientnet_lite(2, spec.head);
  if (name == "small_cnn") return make_small_cnn(spec.head);
  if (name == "convnext_tiny") return make_convnext_tiny(spec.head);
  if (name == "vit_b_16") return make_vit_b_16(spec.head);
  if (name == "maxvit_t") return make_maxvit_t(spec.head);
  if (name == "inception_v3") return make_inception_v3(spec.head);
  throw std::invalid_argument("unknown architecture '" + name + "' (known: " + architecture_list() + ")");
}

}  // namespace petal::models
