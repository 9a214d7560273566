// ConvNeXt-Tiny as torchvision 0.14 builds it (torchvision/models/convnext.py): the same layers
// under the same names, so its state dicts load unchanged.
//   features.0            stem: Conv2d(3, 96, 4, stride 4) "features.0.0", LayerNorm2d "features.0.1"
//   features.1, 3, 5, 7   stages of 3, 3, 9, 3 CNBlocks ("features.1.0.block.0.weight", ".layer_scale")
//   features.2, 4, 6      downsampling: LayerNorm2d "features.2.0", Conv2d(2, stride 2) "features.2.1"
//   classifier.0          LayerNorm2d(768) after the average pool (a backbone block for petal)
//   classifier.2          the head (default: Linear(768, N), torchvision's own key)
// A CNBlock: depthwise 7x7 conv ("block.0"), channels-last LayerNorm ("block.2"), Linear 4x
// ("block.3"), GELU, Linear back ("block.5"), times a per-channel layer scale, row-mode stochastic
// depth (rate 0.1 x block index / 17), plus the input. LayerNorm eps is 1e-6 throughout.
#include <torch/nn.h>

#include <cstdint>
#include <string>
#include <vector>

#include "stages/train/models/classifier.h"
#include "stages/train/models/model_zoo.h"
#include "stages/train/models/weight_init.h"

namespace petal::models {

namespace {

constexpr double kLayerNormEps = 1e-6;
constexpr double kLayerScale = 1e-6;
constexpr double kStochasticDepthRate = 0.1;  // torchvision's convnext_tiny(stochastic_depth_prob=0.1)
constexpr std::int64_t kFeatureDim = 768;

// torchvision's LayerNorm2d: LayerNorm over the channels of an NCHW map.
class LayerNorm2dImpl : public torch::nn::Module {
 public:
  explicit LayerNorm2dImpl(std::int64_t channels) : channels_(channels) {
    weight_ = register_parameter("weight", torch::ones({channels}));
    bias_ = register_parameter("bias", torch::zeros({channels}));
  }
  torch::Tensor forward(const torch::Tensor& x) {
    return torch::layer_norm(x.permute({0, 2, 3, 1}), {channels_}, weight_, bias_, kLayerNormEps).permute({0, 3, 1, 2});
  }

 private:
  std::int64_t channels_;
  torch::Tensor weight_, bias_;
};
TORCH_MODULE(LayerNorm2d);

// Children "0" (a conv) and "1" (a LayerNorm2d), applied in `norm_first` order: the stem
// (conv, norm) and the downsampling layers (norm, conv) of torchvision's Sequentials.
class ConvNormImpl : public torch::nn::Module {
 public:
  ConvNormImpl(std::int64_t in, std::int64_t out, std::int64_t kernel, bool norm_first) : norm_first_(norm_first) {
    const auto conv = torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, kernel).stride(kernel).bias(true));
    if (norm_first) {
      norm_ = register_module("0", LayerNorm2d(in));
      conv_ = register_module("1", conv);
    } else {
      conv_ = register_module("0", conv);
      norm_ = register_module("1", LayerNorm2d(out));
    }
  }
  torch::Tensor forward(const torch::Tensor& x) { return norm_first_ ? conv_(norm_(x)) : norm_(conv_(x)); }

 private:
  bool norm_first_;
  torch::nn::Conv2d conv_{nullptr};
  LayerNorm2d norm_{nullptr};
};
TORCH_MODULE(ConvNorm);

class CNBlockImpl : public torch::nn::Module {
 public:
  CNBlockImpl(std::int64_t dim, double drop_rate) : drop_rate_(drop_rate) {
    // torchvision's Sequential(conv, Permute, LayerNorm, Linear, GELU, Linear, Permute): only
    // children 0, 2, 3 and 5 hold parameters, and their indices are the state dict's.
    auto block = register_module("block", std::make_shared<torch::nn::Module>());
    depthwise_ = block->register_module(
        "0", torch::nn::Conv2d(torch::nn::Conv2dOptions(dim, dim, 7).padding(3).groups(dim).bias(true)));
    norm_ = block->register_module("2", torch::nn::LayerNorm(torch::nn::LayerNormOptions({dim}).eps(kLayerNormEps)));
    expand_ = block->register_module("3", torch::nn::Linear(dim, 4 * dim));
    project_ = block->register_module("5", torch::nn::Linear(4 * dim, dim));
    layer_scale_ = register_parameter("layer_scale", torch::full({dim, 1, 1}, kLayerScale));
  }
  torch::Tensor forward(const torch::Tensor& x) {
    torch::Tensor y = depthwise_(x).permute({0, 2, 3, 1});
    y = project_(torch::gelu(expand_(norm_(y)))).permute({0, 3, 1, 2});
    y = layer_scale_ * y;
    if (is_training() && drop_rate_ > 0) {
      // Row mode: a whole sample's branch is dropped, the survivors scaled by 1 / keep.
      const double keep = 1.0 - drop_rate_;
      torch::Tensor mask = torch::empty({y.size(0), 1, 1, 1}, y.options()).bernoulli_(keep);
      if (keep > 0) mask.div_(keep);
      y = y * mask;
    }
    return y + x;
  }

 private:
  double drop_rate_;
  torch::nn::Conv2d depthwise_{nullptr};
  torch::nn::LayerNorm norm_{nullptr};
  torch::nn::Linear expand_{nullptr}, project_{nullptr};
  torch::Tensor layer_scale_;
};
TORCH_MODULE(CNBlock);

// A stage: CNBlocks named "0", "1", ... (a Sequential whose forward is not a template, so that
// it can sit inside another Sequential).
class BlockSequenceImpl : public torch::nn::SequentialImpl {
 public:
  torch::Tensor forward(torch::Tensor x) { return SequentialImpl::forward(std::move(x)); }
};

class ConvNeXtTinyImpl : public ClassifierImpl {
 public:
  explicit ConvNeXtTinyImpl(const HeadSpec& head) {
    struct Stage {
      std::int64_t channels, out, blocks;  // out 0: no downsampling after it
    };
    static const std::vector<Stage> kStages = {{96, 192, 3}, {192, 384, 3}, {384, 768, 9}, {768, 0, 3}};
    std::int64_t total = 0;
    for (const Stage& s : kStages) total += s.blocks;
    features_ = register_module("features", torch::nn::Sequential());
    features_->push_back(ConvNorm(3, 96, 4, /*norm_first=*/false));
    std::int64_t index = 0;
    for (const Stage& s : kStages) {
      auto stage = std::make_shared<BlockSequenceImpl>();
      for (std::int64_t b = 0; b < s.blocks; ++b, ++index) {
        stage->push_back(CNBlock(s.channels, kStochasticDepthRate * static_cast<double>(index) / static_cast<double>(total - 1)));
      }
      features_->push_back(stage);
      if (s.out > 0) features_->push_back(ConvNorm(s.channels, s.out, 2, /*norm_first=*/true));
    }
    auto classifier = register_module("classifier", std::make_shared<torch::nn::Module>());
    final_norm_ = classifier->register_module("0", LayerNorm2d(kFeatureDim));
    head_ = make_head(head, kFeatureDim, "linear", 0.0);
    classifier->register_module("2", head_.ptr());
    init_conv_linear_normal(*this, 0.02);  // torchvision: the head too; LayerNorms ones / zeros
  }

  torch::Tensor feature_map(const torch::Tensor& images) override { return features_->forward(images); }
  torch::Tensor embed(const torch::Tensor& feature_map) override {
    return torch::flatten(final_norm_(torch::adaptive_avg_pool2d(feature_map, {1, 1})), 1);
  }
  torch::Tensor classify(const torch::Tensor& features) override { return head_.forward(features); }

  std::vector<std::string> blocks() const override {
    std::vector<std::string> names;
    for (std::size_t i = 0; i < features_->size(); ++i) names.push_back("features." + std::to_string(i));
    names.push_back("classifier.0");
    return names;  // "features.0" .. "features.7", "classifier.0"
  }
  std::string head_prefix() const override { return "classifier.2"; }
  std::int64_t feature_dim() const override { return kFeatureDim; }
  std::string architecture() const override { return "convnext_tiny"; }

 private:
  torch::nn::Sequential features_{nullptr};
  LayerNorm2d final_norm_{nullptr};
  torch::nn::AnyModule head_;
};

}  // namespace

Classifier make_convnext_tiny(const HeadSpec& head) { return std::make_shared<ConvNeXtTinyImpl>(head); }

}  // namespace petal::models
