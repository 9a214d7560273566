// VGG-16 with batch norm as torchvision 0.14 builds it (torchvision/models/vgg.py, cfg "D"), with
// the same module indices, so torchvision state dicts load unchanged.
#include <torch/nn/init.h>
#include <torch/nn/modules/activation.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/dropout.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/pooling.h>

#include <string>
#include <vector>

#include "stages/train/models/model_zoo.h"

namespace petal::models {

namespace {

namespace nn = torch::nn;

constexpr int kPool = 0;  // "M" in torchvision's cfgs
// torchvision's cfgs["D"]: conv widths, kPool for a 2x2 max pool.
const std::vector<int> kConfigD = {64, 64, kPool, 128, 128, kPool, 256, 256, 256, kPool,
                                   512, 512, 512, kPool, 512, 512, 512, kPool};

class Vgg16BnImpl : public ClassifierImpl {
 public:
  explicit Vgg16BnImpl(const HeadSpec& head_spec) {
    // features: [Conv2d, BatchNorm2d, ReLU] per width, MaxPool2d per "M" -> indices 0..43.
    features_ = register_module("features", nn::Sequential());
    std::int64_t in = 3;
    for (const int width : kConfigD) {
      if (width == kPool) {
        features_->push_back(nn::MaxPool2d(nn::MaxPool2dOptions(2).stride(2)));
        continue;
      }
      blocks_.push_back("features." + std::to_string(features_->size()));
      features_->push_back(nn::Conv2d(nn::Conv2dOptions(in, width, 3).padding(1)));
      blocks_.push_back("features." + std::to_string(features_->size()));
      features_->push_back(nn::BatchNorm2d(width));
      features_->push_back(nn::ReLU(nn::ReLUOptions().inplace(true)));
      in = width;
    }
    avgpool_ = register_module("avgpool", nn::AdaptiveAvgPool2d(nn::AdaptiveAvgPool2dOptions(7)));

    // classifier 0..5 are the fixed fully connected layers (part of the backbone); 6 is the head.
    classifier_ = register_module("classifier", nn::Sequential());
    classifier_->push_back(nn::Linear(512 * 7 * 7, 4096));
    classifier_->push_back(nn::ReLU(nn::ReLUOptions().inplace(true)));
    classifier_->push_back(nn::Dropout(0.5));
    classifier_->push_back(nn::Linear(4096, 4096));
    classifier_->push_back(nn::ReLU(nn::ReLUOptions().inplace(true)));
    classifier_->push_back(nn::Dropout(0.5));
    head_ = make_head(head_spec, kFeatureDim, "linear", 0.0);
    classifier_->push_back(head_);
    blocks_.push_back("classifier.0");
    blocks_.push_back("classifier.3");

    // torchvision's init over every module, the head included (as when built with num_classes = N).
    for (const auto& module : modules(/*include_self=*/false)) {
      if (auto* conv = module->as<nn::Conv2d>()) {
        nn::init::kaiming_normal_(conv->weight, 0.0, torch::kFanOut, torch::kReLU);
        nn::init::zeros_(conv->bias);
      } else if (auto* bn = module->as<nn::BatchNorm2d>()) {
        nn::init::ones_(bn->weight);
        nn::init::zeros_(bn->bias);
      } else if (auto* linear = module->as<nn::Linear>()) {
        nn::init::normal_(linear->weight, 0.0, 0.01);
        nn::init::zeros_(linear->bias);
      }
    }
  }

  torch::Tensor feature_map(const torch::Tensor& images) override { return features_->forward(images); }

  // Everything between the last pool and the head: avgpool, flatten, classifier[0..5].
  torch::Tensor embed(const torch::Tensor& feature_map) override {
    torch::Tensor x = avgpool_(feature_map).flatten(1);
    auto layer = classifier_->begin();
    for (int i = 0; i < kFixedClassifierLayers; ++i, ++layer) x = layer->forward(x);
    return x;
  }
  torch::Tensor classify(const torch::Tensor& features) override { return head_.forward(features); }

  // One block per parameterised module, in order: each conv and each BatchNorm of `features`
  // ("features.0", "features.1", "features.3", ...), then the two fixed Linear layers.
  std::vector<std::string> blocks() const override { return blocks_; }
  std::string head_prefix() const override { return "classifier.6"; }
  std::int64_t feature_dim() const override { return kFeatureDim; }
  std::string architecture() const override { return "vgg16_bn"; }

 private:
  static constexpr std::int64_t kFeatureDim = 4096;
  static constexpr int kFixedClassifierLayers = 6;

  nn::Sequential features_{nullptr};
  nn::AdaptiveAvgPool2d avgpool_{nullptr};
  nn::Sequential classifier_{nullptr};
  nn::AnyModule head_;
  std::vector<std::string> blocks_;
};

}  // namespace

Classifier make_vgg16_bn(const HeadSpec& head) { return std::make_shared<Vgg16BnImpl>(head); }

}  // namespace petal::models
