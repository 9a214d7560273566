// DenseNet-121 as torchvision 0.14 builds it (torchvision/models/densenet.py: growth 32, blocks
// 6/12/24/16, 64 initial features, bn_size 4, no dropout, memory_efficient=False), with the same
// module names, so torchvision state dicts (after the legacy "norm.1" -> "norm1" renaming) load.
#include <torch/nn/functional/activation.h>
#include <torch/nn/init.h>
#include <torch/nn/modules/activation.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/pooling.h>

#include <array>
#include <string>
#include <vector>

#include "stages/train/models/model_zoo.h"

namespace petal::models {

namespace {

namespace nn = torch::nn;

constexpr std::int64_t kGrowthRate = 32;
constexpr std::int64_t kBottleneckWidth = 4 * kGrowthRate;  // bn_size * growth_rate
constexpr std::int64_t kInitialFeatures = 64;
constexpr std::array<int, 4> kBlockLayers = {6, 12, 24, 16};

nn::ReLU inplace_relu() { return nn::ReLU(nn::ReLUOptions().inplace(true)); }

// BN-ReLU-Conv1x1-BN-ReLU-Conv3x3 over the concatenation of all earlier feature maps of its block.
// The ReLUs are in place: each acts on a fresh BatchNorm output, never on the shared inputs.
class DenseLayerImpl : public nn::Module {
 public:
  explicit DenseLayerImpl(std::int64_t in)
      : norm1(register_module("norm1", nn::BatchNorm2d(in))),
        relu1(register_module("relu1", inplace_relu())),
        conv1(register_module("conv1", nn::Conv2d(nn::Conv2dOptions(in, kBottleneckWidth, 1).bias(false)))),
        norm2(register_module("norm2", nn::BatchNorm2d(kBottleneckWidth))),
        relu2(register_module("relu2", inplace_relu())),
        conv2(register_module("conv2",
                              nn::Conv2d(nn::Conv2dOptions(kBottleneckWidth, kGrowthRate, 3).padding(1).bias(false)))) {}

  torch::Tensor forward(const torch::Tensor& concatenated) {
    return conv2(relu2(norm2(conv1(relu1(norm1(concatenated))))));
  }

  nn::BatchNorm2d norm1;
  nn::ReLU relu1;
  nn::Conv2d conv1;
  nn::BatchNorm2d norm2;
  nn::ReLU relu2;
  nn::Conv2d conv2;
};
TORCH_MODULE(DenseLayer);

// denselayer1..N; each layer sees the block input and every earlier layer's output, concatenated.
class DenseBlockImpl : public nn::Module {
 public:
  DenseBlockImpl(int count, std::int64_t in) {
    for (int i = 0; i < count; ++i) {
      layers_.push_back(register_module("denselayer" + std::to_string(i + 1), DenseLayer(in + i * kGrowthRate)));
    }
  }

  torch::Tensor forward(const torch::Tensor& x) {
    std::vector<torch::Tensor> features{x};
    features.reserve(layers_.size() + 1);
    for (DenseLayer& layer : layers_) features.push_back(layer(torch::cat(features, 1)));
    return torch::cat(features, 1);
  }

 private:
  std::vector<DenseLayer> layers_;
};
TORCH_MODULE(DenseBlock);

// torchvision's _Transition (an nn.Sequential with named children): halves channels and resolution.
class TransitionImpl : public nn::Module {
 public:
  TransitionImpl(std::int64_t in, std::int64_t out)
      : norm(register_module("norm", nn::BatchNorm2d(in))),
        relu(register_module("relu", inplace_relu())),
        conv(register_module("conv", nn::Conv2d(nn::Conv2dOptions(in, out, 1).bias(false)))),
        pool(register_module("pool", nn::AvgPool2d(nn::AvgPool2dOptions(2).stride(2)))) {}

  torch::Tensor forward(const torch::Tensor& x) { return pool(conv(relu(norm(x)))); }

  nn::BatchNorm2d norm;
  nn::ReLU relu;
  nn::Conv2d conv;
  nn::AvgPool2d pool;
};
TORCH_MODULE(Transition);

class DenseNet121Impl : public ClassifierImpl {
 public:
  explicit DenseNet121Impl(const HeadSpec& head_spec) {
    features_ = register_module("features", nn::Sequential());
    features_->push_back("conv0", nn::Conv2d(nn::Conv2dOptions(3, kInitialFeatures, 7).stride(2).padding(3).bias(false)));
    features_->push_back("norm0", nn::BatchNorm2d(kInitialFeatures));
    features_->push_back("relu0", inplace_relu());
    features_->push_back("pool0", nn::MaxPool2d(nn::MaxPool2dOptions(3).stride(2).padding(1)));
    std::int64_t channels = kInitialFeatures;
    for (std::size_t b = 0; b < kBlockLayers.size(); ++b) {
      const std::string index = std::to_string(b + 1);
      features_->push_back("denseblock" + index, DenseBlock(kBlockLayers[b], channels));
      channels += kBlockLayers[b] * kGrowthRate;
      if (b + 1 == kBlockLayers.size()) break;
      features_->push_back("transition" + index, Transition(channels, channels / 2));
      channels /= 2;
    }
    features_->push_back("norm5", nn::BatchNorm2d(channels));
    feature_dim_ = channels;  // 1024

    head_ = make_head(head_spec, feature_dim_, "linear", 0.0);
    register_module("classifier", head_.ptr());

    // torchvision's "official init": convs kaiming_normal_ with its defaults (fan_in, gain sqrt(2)),
    // BatchNorm2d 1/0, Linear biases 0 (weights left at PyTorch's default) - the head's too.
    for (const auto& module : modules(/*include_self=*/false)) {
      if (auto* conv = module->as<nn::Conv2d>()) {
        nn::init::kaiming_normal_(conv->weight);
      } else if (auto* bn = module->as<nn::BatchNorm2d>()) {
        nn::init::ones_(bn->weight);
        nn::init::zeros_(bn->bias);
      } else if (auto* linear = module->as<nn::Linear>()) {
        nn::init::zeros_(linear->bias);
      }
    }
  }

  // torchvision applies F.relu(inplace=True) to the features' output (norm5) before pooling; that
  // rectified map is the last feature map. In place is safe: norm5's output is not shared.
  torch::Tensor feature_map(const torch::Tensor& images) override {
    torch::Tensor features = features_->forward(images);
    return torch::relu_(features);
  }
  torch::Tensor embed(const torch::Tensor& feature_map) override {
    return torch::adaptive_avg_pool2d(feature_map, {1, 1}).flatten(1);
  }
  torch::Tensor classify(const torch::Tensor& features) override { return head_.forward(features); }

  std::vector<std::string> blocks() const override {
    return {"features.conv0",       "features.norm0",       "features.denseblock1", "features.transition1",
            "features.denseblock2", "features.transition2", "features.denseblock3", "features.transition3",
            "features.denseblock4", "features.norm5"};
  }
  std::string head_prefix() const override { return "classifier"; }
  std::int64_t feature_dim() const override { return feature_dim_; }
  std::string architecture() const override { return "densenet121"; }

 private:
  nn::Sequential features_{nullptr};
  nn::AnyModule head_;
  std::int64_t feature_dim_ = 0;
};

}  // namespace

Classifier make_densenet121(const HeadSpec& head) { return std::make_shared<DenseNet121Impl>(head); }

}  // namespace petal::models
