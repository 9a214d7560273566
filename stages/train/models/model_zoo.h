#pragma once
#include "stages/train/models/classifier.h"

namespace petal::models {

// Builds an untrained network (torchvision's initialisation). Throws std::invalid_argument for an
// unknown architecture or an invalid head.
Classifier make_classifier(const ModelSpec& spec);

// One factory per architecture file (resnet.cpp, vgg.cpp, ...), dispatched by make_classifier.
Classifier make_resnet(int depth, const HeadSpec& head);           // 18 or 50
Classifier make_vgg16_bn(const HeadSpec& head);
Classifier make_densenet121(const HeadSpec& head);
Classifier make_mobilenet_v2(const HeadSpec& head);
Classifier make_efficientnet_b0(const HeadSpec& head);
Classifier make_efficientnet_lite(int variant, const HeadSpec& head);  // efficientnet_lite0, 1 or 2
Classifier make_small_cnn(const HeadSpec& head);
Classifier make_convnext_tiny(const HeadSpec& head);
Classifier make_vit_b_16(const HeadSpec& head);
Classifier make_maxvit_t(const HeadSpec& head);
Classifier make_inception_v3(const HeadSpec& head);

}  // namespace petal::models
