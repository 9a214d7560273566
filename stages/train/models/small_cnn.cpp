// small_cnn: a compact from-scratch baseline (no published weights), sized for ~128 px images.
// Four stages, each [Conv3x3-BN-ReLU] x 2 then a 2x2 max pool, widths 32/64/128/256; global
// average pool; Sequential(Dropout, Linear) head. Its Python twin is `small_cnn` in
// tests/parity/make_reference.py, which must stay identical (names, order, init).
#include <torch/nn/init.h>
#include <torch/nn/modules/activation.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/pooling.h>

#include <array>
#include <string>
#include <utility>

#include "stages/train/models/model_zoo.h"

namespace petal::models {

namespace {

namespace nn = torch::nn;

constexpr std::array<std::int64_t, 4> kWidths = {32, 64, 128, 256};
constexpr double kDefaultDropout = 0.2;

// A Sequential that can sit inside another one (a plain Sequential's forward is a template, which
// AnyModule cannot hold). Its children are named "0", "1", ..., as in torch.nn.Sequential.
class StageImpl : public nn::SequentialImpl {
 public:
  torch::Tensor forward(torch::Tensor x) { return SequentialImpl::forward(std::move(x)); }
};

// features.<s>: 0 conv, 1 bn, 2 relu, 3 conv, 4 bn, 5 relu, 6 maxpool. At 128 px the last
// feature map is 8x8.
std::shared_ptr<StageImpl> make_stage(std::int64_t in, std::int64_t out) {
  auto stage = std::make_shared<StageImpl>();
  for (const std::int64_t width_in : {in, out}) {
    stage->push_back(nn::Conv2d(nn::Conv2dOptions(width_in, out, 3).padding(1).bias(false)));
    stage->push_back(nn::BatchNorm2d(out));
    stage->push_back(nn::ReLU(nn::ReLUOptions().inplace(true)));
  }
  stage->push_back(nn::MaxPool2d(nn::MaxPool2dOptions(2).stride(2)));
  return stage;
}

class SmallCnnImpl : public ClassifierImpl {
 public:
  explicit SmallCnnImpl(const HeadSpec& head_spec) {
    features_ = register_module("features", nn::Sequential());
    std::int64_t in = 3;
    for (const std::int64_t width : kWidths) {
      features_->push_back(make_stage(in, width));
      in = width;
    }
    head_ = make_head(head_spec, kWidths.back(), "dropout_linear", kDefaultDropout);
    register_module("classifier", head_.ptr());

    // As torchvision's ResNet: convs kaiming fan_out, BatchNorm2d 1/0, Linear at PyTorch's default.
    for (const auto& module : modules(/*include_self=*/false)) {
      if (auto* conv = module->as<nn::Conv2d>()) {
        nn::init::kaiming_normal_(conv->weight, 0.0, torch::kFanOut, torch::kReLU);
      } else if (auto* bn = module->as<nn::BatchNorm2d>()) {
        nn::init::ones_(bn->weight);
        nn::init::zeros_(bn->bias);
      }
    }
  }

  torch::Tensor feature_map(const torch::Tensor& images) override { return features_->forward(images); }
  torch::Tensor embed(const torch::Tensor& feature_map) override {
    return torch::adaptive_avg_pool2d(feature_map, {1, 1}).flatten(1);
  }
  torch::Tensor classify(const torch::Tensor& features) override { return head_.forward(features); }

  std::vector<std::string> blocks() const override { return {"features.0", "features.1", "features.2", "features.3"}; }
  std::string head_prefix() const override { return "classifier"; }
  std::int64_t feature_dim() const override { return kWidths.back(); }
  std::string architecture() const override { return "small_cnn"; }

 private:
  nn::Sequential features_{nullptr};
  nn::AnyModule head_;
};

}  // namespace

Classifier make_small_cnn(const HeadSpec& head) { return std::make_shared<SmallCnnImpl>(head); }

}  // namespace petal::models
