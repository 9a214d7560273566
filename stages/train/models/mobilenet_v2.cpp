// MobileNetV2 as torchvision 0.14 builds it (torchvision/models/mobilenetv2.py, width_mult 1.0):
// the same layers in the same order under the same names, so its state dicts load unchanged.
//   features.0           Conv2dNormActivation(3, 32, stride 2)             "features.0.0.weight", "features.0.1.*"
//   features.1 .. 17     InvertedResidual                                   "features.1.conv.0.0.weight", ...
//   features.18          Conv2dNormActivation(320, 1280, kernel 1)          "features.18.0.weight"
//   classifier           the head (default: Dropout(0.2), Linear(1280, N))  "classifier.1.weight"
// BatchNorm2d keeps PyTorch's defaults (eps 1e-5, momentum 0.1); every ReLU6 is in place, as torchvision's.
#include <torch/nn.h>

#include <cstdint>
#include <string>
#include <vector>

#include "stages/train/models/classifier.h"
#include "stages/train/models/model_zoo.h"

namespace petal::models {

namespace {

constexpr std::int64_t kLastChannel = 1280;
constexpr double kDefaultDropout = 0.2;  // torchvision's MobileNetV2(dropout=0.2)

// torchvision's Conv2dNormActivation(norm_layer=BatchNorm2d, activation_layer=ReLU6): a bias-free
// conv with "same" padding (k - 1) / 2, child "0"; BatchNorm2d, child "1"; ReLU6 in place (no parameters).
class ConvBnReLU6Impl : public torch::nn::Module {
 public:
  ConvBnReLU6Impl(std::int64_t in, std::int64_t out, std::int64_t kernel, std::int64_t stride = 1,
                  std::int64_t groups = 1) {
    conv_ = register_module("0", torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, kernel)
                                                       .stride(stride)
                                                       .padding((kernel - 1) / 2)
                                                       .groups(groups)
                                                       .bias(false)));
    bn_ = register_module("1", torch::nn::BatchNorm2d(out));
  }
  torch::Tensor forward(const torch::Tensor& x) {
    torch::Tensor y = bn_(conv_(x));
    return torch::relu6_(y);  // in place: BatchNorm's backward needs its input, not its output
  }

 private:
  torch::nn::Conv2d conv_{nullptr};
  torch::nn::BatchNorm2d bn_{nullptr};
};
TORCH_MODULE(ConvBnReLU6);

// torchvision's InvertedResidual: "conv" = [1x1 expand ConvBnReLU6 (only when expand_ratio != 1)],
// 3x3 depthwise ConvBnReLU6, 1x1 projection Conv2d, BatchNorm2d (linear bottleneck, no activation).
// The residual is added when the block keeps both the resolution and the channel count.
class InvertedResidualImpl : public torch::nn::Module {
 public:
  InvertedResidualImpl(std::int64_t in, std::int64_t out, std::int64_t stride, std::int64_t expand_ratio)
      : use_residual_(stride == 1 && in == out) {
    const std::int64_t hidden = in * expand_ratio;  // int(round(inp * expand_ratio)) for integer ratios
    conv_ = register_module("conv", torch::nn::Sequential());
    if (expand_ratio != 1) conv_->push_back(ConvBnReLU6(in, hidden, 1));
    conv_->push_back(ConvBnReLU6(hidden, hidden, 3, stride, hidden));
    conv_->push_back(torch::nn::Conv2d(torch::nn::Conv2dOptions(hidden, out, 1).bias(false)));
    conv_->push_back(torch::nn::BatchNorm2d(out));
  }
  torch::Tensor forward(const torch::Tensor& x) {
    torch::Tensor y = conv_->forward(x);
    if (use_residual_) y += x;  // y is this block's fresh BatchNorm output, so adding in place is safe
    return y;
  }

 private:
  bool use_residual_;
  torch::nn::Sequential conv_{nullptr};
};
TORCH_MODULE(InvertedResidual);

struct StageSetting {
  std::int64_t expand_ratio, channels, repeats, stride;  // torchvision's t, c, n, s
};

class MobileNetV2Impl : public ClassifierImpl {
 public:
  explicit MobileNetV2Impl(const HeadSpec& head) {
    static const std::vector<StageSetting> kStages = {
        {1, 16, 1, 1}, {6, 24, 2, 2}, {6, 32, 3, 2}, {6, 64, 4, 2}, {6, 96, 3, 1}, {6, 160, 3, 2}, {6, 320, 1, 1},
    };
    features_ = register_module("features", torch::nn::Sequential());
    std::int64_t channels = 32;
    features_->push_back(ConvBnReLU6(3, channels, 3, 2));
    for (const StageSetting& stage : kStages) {
      for (std::int64_t i = 0; i < stage.repeats; ++i) {
        // Only the first block of a stage strides.
        features_->push_back(InvertedResidual(channels, stage.channels, i == 0 ? stage.stride : 1, stage.expand_ratio));
        channels = stage.channels;
      }
    }
    features_->push_back(ConvBnReLU6(channels, kLastChannel, 1));

    head_ = make_head(head, kLastChannel, "dropout_linear", kDefaultDropout);
    register_module("classifier", head_.ptr());
    initialize();
  }

  torch::Tensor feature_map(const torch::Tensor& images) override { return features_->forward(images); }
  torch::Tensor embed(const torch::Tensor& feature_map) override {
    return torch::flatten(torch::adaptive_avg_pool2d(feature_map, {1, 1}), 1);
  }
  torch::Tensor classify(const torch::Tensor& features) override { return head_.forward(features); }

  std::vector<std::string> blocks() const override {
    std::vector<std::string> names;
    for (std::size_t i = 0; i < features_->size(); ++i) names.push_back("features." + std::to_string(i));
    return names;  // "features.0" .. "features.18"
  }
  std::string head_prefix() const override { return "classifier"; }
  std::int64_t feature_dim() const override { return kLastChannel; }
  std::string architecture() const override { return "mobilenet_v2"; }

 private:
  // torchvision's loop over self.modules(), head included: convs kaiming-normal (fan_out) with zero
  // bias, BatchNorms ones / zeros, Linears normal(0, 0.01) with zero bias.
  void initialize() {
    torch::NoGradGuard no_grad;
    for (const auto& module : modules(/*include_self=*/false)) {
      if (auto* conv = module->as<torch::nn::Conv2d>()) {
        torch::nn::init::kaiming_normal_(conv->weight, 0.0, torch::kFanOut);
        if (conv->bias.defined()) torch::nn::init::zeros_(conv->bias);
      } else if (auto* bn = module->as<torch::nn::BatchNorm2d>()) {
        torch::nn::init::ones_(bn->weight);
        torch::nn::init::zeros_(bn->bias);
      } else if (auto* linear = module->as<torch::nn::Linear>()) {
        torch::nn::init::normal_(linear->weight, 0.0, 0.01);
        torch::nn::init::zeros_(linear->bias);
      }
    }
  }

  torch::nn::Sequential features_{nullptr};
  torch::nn::AnyModule head_;
};

}  // namespace

Classifier make_mobilenet_v2(const HeadSpec& head) { return std::make_shared<MobileNetV2Impl>(head); }

}  // namespace petal::models
