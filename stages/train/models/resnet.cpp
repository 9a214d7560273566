// ResNet-18 and ResNet-50 as torchvision 0.14 builds them (torchvision/models/resnet.py), with
// the same module names, so torchvision state dicts load unchanged.
#include <torch/nn/functional/pooling.h>
#include <torch/nn/init.h>
#include <torch/nn/modules/activation.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/pooling.h>

#include <array>
#include <stdexcept>
#include <string>

#include "stages/train/models/model_zoo.h"

namespace petal::models {

namespace {

namespace nn = torch::nn;

nn::Conv2d conv3x3(std::int64_t in, std::int64_t out, std::int64_t stride = 1) {
  return nn::Conv2d(nn::Conv2dOptions(in, out, 3).stride(stride).padding(1).bias(false));
}

nn::Conv2d conv1x1(std::int64_t in, std::int64_t out, std::int64_t stride = 1) {
  return nn::Conv2d(nn::Conv2dOptions(in, out, 1).stride(stride).bias(false));
}

nn::ReLU inplace_relu() { return nn::ReLU(nn::ReLUOptions().inplace(true)); }

// conv1x1 + BatchNorm when the block changes resolution or width; empty otherwise (torchvision
// registers no "downsample" then, so the state dict has no such keys).
nn::Sequential make_downsample(std::int64_t in, std::int64_t out, std::int64_t stride) {
  if (stride == 1 && in == out) return nullptr;
  return nn::Sequential(conv1x1(in, out, stride), nn::BatchNorm2d(out));
}

// The residual add and the ReLUs are in place, as in torchvision: same memory traffic and speed.
// Both are safe for autograd: BatchNorm's and add's backward do not need their outputs.
class BasicBlockImpl : public nn::Module {
 public:
  static constexpr std::int64_t kExpansion = 1;

  BasicBlockImpl(std::int64_t in, std::int64_t planes, std::int64_t stride)
      : conv1(register_module("conv1", conv3x3(in, planes, stride))),
        bn1(register_module("bn1", nn::BatchNorm2d(planes))),
        relu(register_module("relu", inplace_relu())),
        conv2(register_module("conv2", conv3x3(planes, planes))),
        bn2(register_module("bn2", nn::BatchNorm2d(planes))),
        downsample(make_downsample(in, planes * kExpansion, stride)) {
    if (downsample) register_module("downsample", downsample);
  }

  torch::Tensor forward(const torch::Tensor& x) {
    torch::Tensor out = relu(bn1(conv1(x)));
    out = bn2(conv2(out));
    out += downsample ? downsample->forward(x) : x;
    return relu(out);
  }

  nn::Conv2d conv1;
  nn::BatchNorm2d bn1;
  nn::ReLU relu;
  nn::Conv2d conv2;
  nn::BatchNorm2d bn2;
  nn::Sequential downsample;
};

class BottleneckImpl : public nn::Module {
 public:
  static constexpr std::int64_t kExpansion = 4;

  // torchvision v1.5: the stride sits on the 3x3 conv, not on the first 1x1.
  BottleneckImpl(std::int64_t in, std::int64_t planes, std::int64_t stride)
      : conv1(register_module("conv1", conv1x1(in, planes))),
        bn1(register_module("bn1", nn::BatchNorm2d(planes))),
        conv2(register_module("conv2", conv3x3(planes, planes, stride))),
        bn2(register_module("bn2", nn::BatchNorm2d(planes))),
        conv3(register_module("conv3", conv1x1(planes, planes * kExpansion))),
        bn3(register_module("bn3", nn::BatchNorm2d(planes * kExpansion))),
        relu(register_module("relu", inplace_relu())),
        downsample(make_downsample(in, planes * kExpansion, stride)) {
    if (downsample) register_module("downsample", downsample);
  }

  torch::Tensor forward(const torch::Tensor& x) {
    torch::Tensor out = relu(bn1(conv1(x)));
    out = relu(bn2(conv2(out)));
    out = bn3(conv3(out));
    out += downsample ? downsample->forward(x) : x;
    return relu(out);
  }

  nn::Conv2d conv1;
  nn::BatchNorm2d bn1;
  nn::Conv2d conv2;
  nn::BatchNorm2d bn2;
  nn::Conv2d conv3;
  nn::BatchNorm2d bn3;
  nn::ReLU relu;
  nn::Sequential downsample;
};

class ResNetImpl : public ClassifierImpl {
 public:
  ResNetImpl(int depth, const HeadSpec& head_spec) : depth_(depth) {
    conv1_ = register_module("conv1", nn::Conv2d(nn::Conv2dOptions(3, 64, 7).stride(2).padding(3).bias(false)));
    bn1_ = register_module("bn1", nn::BatchNorm2d(64));
    relu_ = register_module("relu", inplace_relu());
    maxpool_ = register_module("maxpool", nn::MaxPool2d(nn::MaxPool2dOptions(3).stride(2).padding(1)));
    if (depth == 18) {
      make_layers<BasicBlockImpl>({2, 2, 2, 2});
    } else if (depth == 50) {
      make_layers<BottleneckImpl>({3, 4, 6, 3});
    } else {
      throw std::invalid_argument("unsupported resnet depth " + std::to_string(depth) + " (18 or 50)");
    }
    avgpool_ = register_module("avgpool", nn::AdaptiveAvgPool2d(nn::AdaptiveAvgPool2dOptions(1)));
    head_ = make_head(head_spec, feature_dim_, "linear", 0.0);
    register_module("fc", head_.ptr());

    // torchvision's init over every module (the head too, as when built with num_classes = N):
    // convs kaiming fan_out, BatchNorm2d 1/0, Linear left at PyTorch's default; no zero_init_residual.
    for (const auto& module : modules(/*include_self=*/false)) {
      if (auto* conv = module->as<nn::Conv2d>()) {
        nn::init::kaiming_normal_(conv->weight, 0.0, torch::kFanOut, torch::kReLU);
      } else if (auto* bn = module->as<nn::BatchNorm2d>()) {
        nn::init::ones_(bn->weight);
        nn::init::zeros_(bn->bias);
      }
    }
  }

  torch::Tensor feature_map(const torch::Tensor& images) override {
    torch::Tensor x = maxpool_(relu_(bn1_(conv1_(images))));
    return layer4_->forward(layer3_->forward(layer2_->forward(layer1_->forward(x))));
  }
  torch::Tensor embed(const torch::Tensor& feature_map) override { return avgpool_(feature_map).flatten(1); }
  torch::Tensor classify(const torch::Tensor& features) override { return head_.forward(features); }

  std::vector<std::string> blocks() const override { return {"conv1", "bn1", "layer1", "layer2", "layer3", "layer4"}; }
  std::string head_prefix() const override { return "fc"; }
  std::int64_t feature_dim() const override { return feature_dim_; }
  std::string architecture() const override { return "resnet" + std::to_string(depth_); }

 private:
  // The first block of each layer takes the stride (none in layer1) and the width change.
  template <typename Block>
  void make_layers(const std::array<int, 4>& counts) {
    const std::array<std::int64_t, 4> planes = {64, 128, 256, 512};
    nn::Sequential* layers[4] = {&layer1_, &layer2_, &layer3_, &layer4_};
    std::int64_t in = 64;
    for (int l = 0; l < 4; ++l) {
      nn::Sequential layer;
      for (int i = 0; i < counts[l]; ++i) {
        layer->push_back(std::make_shared<Block>(in, planes[l], i == 0 && l > 0 ? 2 : 1));
        in = planes[l] * Block::kExpansion;
      }
      *layers[l] = register_module("layer" + std::to_string(l + 1), layer);
    }
    feature_dim_ = in;
  }

  int depth_;
  std::int64_t feature_dim_ = 0;
  nn::Conv2d conv1_{nullptr};
  nn::BatchNorm2d bn1_{nullptr};
  nn::ReLU relu_{nullptr};
  nn::MaxPool2d maxpool_{nullptr};
  nn::Sequential layer1_{nullptr}, layer2_{nullptr}, layer3_{nullptr}, layer4_{nullptr};
  nn::AdaptiveAvgPool2d avgpool_{nullptr};
  nn::AnyModule head_;
};

}  // namespace

Classifier make_resnet(int depth, const HeadSpec& head) { return std::make_shared<ResNetImpl>(depth, head); }

}  // namespace petal::models
