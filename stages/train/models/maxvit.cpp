// MaxViT-T as torchvision 0.14 builds it (torchvision/models/maxvit.py): the same parameters and
// buffers under the same names, so its state dicts load unchanged.
//   stem                      Conv 3x3/2 (no bias) + BatchNorm + GELU ("stem.0.0", "stem.0.1"), Conv 3x3 ("stem.1.0")
//   blocks.0 .. blocks.3      2, 2, 5, 2 MaxViT layers of 64, 128, 256, 512 channels; each layer
//                             "blocks.b.layers.l.layers" is MBconv -> window_attention -> grid_attention
//   classifier.2, .3          LayerNorm(512) and Linear(512, 512) + Tanh after the average pool
//   classifier.5              the head (torchvision's is a Linear without bias; petal's has one)
// MBconv: pre-norm BatchNorm, 1x1 expansion x4, depthwise 3x3 (stride 2 in a block's first layer),
// squeeze-excitation (SiLU, ratio 1/4 of the output width), 1x1 projection, plus the input (through
// AvgPool 3x3/2 and a 1x1 conv where the shape changes). The attention layers partition the map
// into 7x7 windows ("window") or a 7x7 grid of strided cells ("grid") and apply pre-norm multi-head
// attention (head size 32, relative position bias, keys scaled by channels^-1/2 as torchvision
// does) and a GELU MLP x4, each with row-mode stochastic depth (0 .. 0.2 linearly over the 11
// layers). BatchNorms use eps 1e-3 and momentum 0.99 (torchvision's setting, kept for training parity).
// Every stage's map must split into 7x7 partitions: square inputs of a multiple of 224 px.
#include <torch/nn/functional/pooling.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>
#include <torch/torch.h>

#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "stages/train/models/classifier.h"
#include "stages/train/models/model_zoo.h"
#include "stages/train/models/weight_init.h"

namespace petal::models {

namespace {

namespace nn = torch::nn;
namespace F = torch::nn::functional;

constexpr std::int64_t kStem = 64;
constexpr std::int64_t kPartition = 7;
constexpr std::int64_t kHeadDim = 32;
constexpr std::int64_t kFeatureDim = 512;
constexpr double kStochasticDepth = 0.2;

nn::BatchNorm2d batch_norm(std::int64_t channels) {
  return nn::BatchNorm2d(nn::BatchNormOptions(channels).eps(1e-3).momentum(0.99));
}

nn::Conv2d conv(std::int64_t in, std::int64_t out, std::int64_t kernel, std::int64_t stride, bool bias,
                std::int64_t groups = 1) {
  return nn::Conv2d(nn::Conv2dOptions(in, out, kernel).stride(stride).padding((kernel - 1) / 2).groups(groups).bias(bias));
}

// Row mode: each sample's branch is dropped whole, survivors scaled by 1 / keep (training only).
torch::Tensor stochastic_depth(const torch::Tensor& x, double rate, bool training) {
  if (!training || rate <= 0) return x;
  const double keep = 1.0 - rate;
  std::vector<std::int64_t> shape(static_cast<std::size_t>(x.dim()), 1);
  shape[0] = x.size(0);
  torch::Tensor mask = torch::empty(shape, x.options()).bernoulli_(keep);
  if (keep > 0) mask.div_(keep);
  return x * mask;
}

class MBConvImpl : public nn::Module {
 public:
  MBConvImpl(std::int64_t in, std::int64_t out, std::int64_t stride, double drop_rate) : drop_rate_(drop_rate) {
    const std::int64_t mid = out * 4, squeezed = out / 4;
    if (stride != 1 || in != out) {
      // torchvision: Sequential(AvgPool2d(3, 2, 1), Conv2d 1x1) for stride 2, so the conv is "proj.1".
      auto proj = register_module("proj", std::make_shared<nn::Module>());
      project_ = proj->register_module(stride == 2 ? "1" : "0", conv(in, out, 1, 1, true));
      pool_input_ = stride == 2;
    }
    auto layers = register_module("layers", std::make_shared<nn::Module>());
    pre_norm_ = layers->register_module("pre_norm", batch_norm(in));
    auto conv_a = layers->register_module("conv_a", std::make_shared<nn::Module>());
    expand_ = conv_a->register_module("0", conv(in, mid, 1, 1, false));
    expand_norm_ = conv_a->register_module("1", batch_norm(mid));
    auto conv_b = layers->register_module("conv_b", std::make_shared<nn::Module>());
    depthwise_ = conv_b->register_module("0", conv(mid, mid, 3, stride, false, mid));
    depthwise_norm_ = conv_b->register_module("1", batch_norm(mid));
    auto se = layers->register_module("squeeze_excitation", std::make_shared<nn::Module>());
    se_reduce_ = se->register_module("fc1", conv(mid, squeezed, 1, 1, true));
    se_expand_ = se->register_module("fc2", conv(squeezed, mid, 1, 1, true));
    project_out_ = layers->register_module("conv_c", conv(mid, out, 1, 1, true));
  }

  torch::Tensor forward(const torch::Tensor& x) {
    torch::Tensor residual = x;
    if (project_) {
      if (pool_input_) residual = F::avg_pool2d(residual, F::AvgPool2dFuncOptions(3).stride(2).padding(1));
      residual = project_(residual);
    }
    torch::Tensor y = torch::gelu(expand_norm_(expand_(pre_norm_(x))));
    y = torch::gelu(depthwise_norm_(depthwise_(y)));
    const torch::Tensor scale =
        torch::sigmoid(se_expand_(torch::silu(se_reduce_(F::adaptive_avg_pool2d(y, F::AdaptiveAvgPool2dFuncOptions(1))))));
    y = project_out_(y * scale);
    return residual + stochastic_depth(y, drop_rate_, is_training());
  }

 private:
  double drop_rate_;
  bool pool_input_ = false;
  nn::Conv2d project_{nullptr}, expand_{nullptr}, depthwise_{nullptr}, se_reduce_{nullptr}, se_expand_{nullptr},
      project_out_{nullptr};
  nn::BatchNorm2d pre_norm_{nullptr}, expand_norm_{nullptr}, depthwise_norm_{nullptr};
};
TORCH_MODULE(MBConv);

// torchvision's _get_relative_position_index for a 7x7 partition: [49, 49] indices into the
// (2*7-1)^2 table of relative offsets.
torch::Tensor relative_position_index() {
  const torch::Tensor coords = torch::stack(torch::meshgrid({torch::arange(kPartition), torch::arange(kPartition)}, "ij")).flatten(1);
  torch::Tensor relative = (coords.unsqueeze(2) - coords.unsqueeze(1)).permute({1, 2, 0}).contiguous();
  relative.select(2, 0).add_(kPartition - 1).mul_(2 * kPartition - 1);
  relative.select(2, 1).add_(kPartition - 1);
  return relative.sum(-1);
}

class RelativeAttentionImpl : public nn::Module {
 public:
  explicit RelativeAttentionImpl(std::int64_t channels)
      : channels_(channels), heads_(channels / kHeadDim) {
    to_qkv_ = register_module("to_qkv", nn::Linear(channels, 3 * channels));
    merge_ = register_module("merge", nn::Linear(channels, channels));
    const std::int64_t span = 2 * kPartition - 1;
    bias_table_ = register_parameter("relative_position_bias_table", torch::empty({span * span, heads_}).normal_(0.0, 0.02).clamp_(-2.0, 2.0));
    index_ = register_buffer("relative_position_index", relative_position_index());
  }

  // x: [B, G, P, C] (G partitions of P = 49 positions).
  torch::Tensor forward(const torch::Tensor& x) {
    const std::int64_t b = x.size(0), g = x.size(1), p = x.size(2);
    const auto qkv = to_qkv_(x).view({b, g, p, 3, heads_, kHeadDim}).permute({3, 0, 1, 4, 2, 5});  // 3 x [B, G, H, P, D]
    // torchvision scales the keys by the channel count's inverse square root, not the head size's.
    const torch::Tensor keys = qkv[1] * std::pow(static_cast<double>(channels_), -0.5);
    // Module::to(dtype) casts integer buffers too; the index must stay an integer tensor.
    const torch::Tensor index = index_.scalar_type() == torch::kLong ? index_ : index_.to(torch::kLong);
    const torch::Tensor bias = bias_table_.index_select(0, index.view({-1})).view({p, p, heads_}).permute({2, 0, 1});
    const torch::Tensor attention = (torch::matmul(qkv[0], keys.transpose(-2, -1)) + bias).softmax(-1);
    return merge_(torch::matmul(attention, qkv[2]).permute({0, 1, 3, 2, 4}).reshape({b, g, p, channels_}));
  }

 private:
  std::int64_t channels_, heads_;
  nn::Linear to_qkv_{nullptr}, merge_{nullptr};
  torch::Tensor bias_table_, index_;
};
TORCH_MODULE(RelativeAttention);

class PartitionAttentionImpl : public nn::Module {
 public:
  PartitionAttentionImpl(std::int64_t channels, bool grid, double drop_rate) : grid_(grid), drop_rate_(drop_rate) {
    auto attn = register_module("attn_layer", std::make_shared<nn::Module>());
    attn_norm_ = attn->register_module("0", nn::LayerNorm(nn::LayerNormOptions({channels})));
    attention_ = attn->register_module("1", RelativeAttention(channels));
    auto mlp = register_module("mlp_layer", std::make_shared<nn::Module>());
    mlp_norm_ = mlp->register_module("0", nn::LayerNorm(nn::LayerNormOptions({channels})));
    expand_ = mlp->register_module("1", nn::Linear(channels, 4 * channels));
    project_ = mlp->register_module("3", nn::Linear(4 * channels, channels));
  }

  torch::Tensor forward(const torch::Tensor& input) {
    const std::int64_t b = input.size(0), c = input.size(1), h = input.size(2), w = input.size(3);
    if (h % kPartition != 0 || w % kPartition != 0) {
      throw std::invalid_argument("maxvit_t needs every stage's map to split into 7x7 partitions (square inputs of a "
                                  "multiple of 224 px); a stage got " + std::to_string(h) + "x" + std::to_string(w) +
                                  ": set augment.image_size = 224");
    }
    // Window: p = 7 (7x7 neighbourhoods). Grid: p = h / 7, and after the swap each group of 49 is
    // a 7x7 grid of positions p apart.
    const std::int64_t p = grid_ ? h / kPartition : kPartition;
    const std::int64_t gh = h / p, gw = w / p;
    torch::Tensor x = input.reshape({b, c, gh, p, gw, p}).permute({0, 2, 4, 3, 5, 1}).reshape({b, gh * gw, p * p, c});
    if (grid_) x = x.transpose(1, 2);
    x = x + stochastic_depth(attention_(attn_norm_(x)), drop_rate_, is_training());
    x = x + stochastic_depth(project_(torch::gelu(expand_(mlp_norm_(x)))), drop_rate_, is_training());
    if (grid_) x = x.transpose(1, 2);
    return x.reshape({b, gh, gw, p, p, c}).permute({0, 5, 1, 3, 2, 4}).reshape({b, c, h, w});
  }

 private:
  bool grid_;
  double drop_rate_;
  nn::LayerNorm attn_norm_{nullptr}, mlp_norm_{nullptr};
  RelativeAttention attention_{nullptr};
  nn::Linear expand_{nullptr}, project_{nullptr};
};
TORCH_MODULE(PartitionAttention);

class MaxVitLayerImpl : public nn::Module {
 public:
  MaxVitLayerImpl(std::int64_t in, std::int64_t out, std::int64_t stride, double drop_rate) {
    auto layers = register_module("layers", std::make_shared<nn::Module>());
    mbconv_ = layers->register_module("MBconv", MBConv(in, out, stride, drop_rate));
    window_ = layers->register_module("window_attention", PartitionAttention(out, false, drop_rate));
    grid_ = layers->register_module("grid_attention", PartitionAttention(out, true, drop_rate));
  }
  torch::Tensor forward(const torch::Tensor& x) { return grid_(window_(mbconv_(x))); }

 private:
  MBConv mbconv_{nullptr};
  PartitionAttention window_{nullptr}, grid_{nullptr};
};
TORCH_MODULE(MaxVitLayer);

class MaxVitTImpl : public ClassifierImpl {
 public:
  explicit MaxVitTImpl(const HeadSpec& head) {
    auto stem = register_module("stem", std::make_shared<nn::Module>());
    auto stem0 = stem->register_module("0", std::make_shared<nn::Module>());
    stem_conv_ = stem0->register_module("0", conv(3, kStem, 3, 2, false));
    stem_norm_ = stem0->register_module("1", batch_norm(kStem));
    auto stem1 = stem->register_module("1", std::make_shared<nn::Module>());
    stem_out_ = stem1->register_module("0", conv(kStem, kStem, 3, 1, true));
    blocks_ = {"stem"};

    const std::vector<std::int64_t> channels = {64, 128, 256, 512}, depths = {2, 2, 5, 2};
    std::int64_t total = 0;
    for (const std::int64_t d : depths) total += d;
    auto blocks = register_module("blocks", std::make_shared<nn::Module>());
    std::int64_t in = kStem, index = 0;
    for (std::size_t b = 0; b < channels.size(); ++b) {
      auto block = blocks->register_module(std::to_string(b), std::make_shared<nn::Module>());
      auto layers = block->register_module("layers", std::make_shared<nn::Module>());
      for (std::int64_t l = 0; l < depths[b]; ++l, ++index) {
        const double rate = kStochasticDepth * static_cast<double>(index) / static_cast<double>(total - 1);
        layers_.push_back(layers->register_module(std::to_string(l), MaxVitLayer(l == 0 ? in : channels[b], channels[b], l == 0 ? 2 : 1, rate)));
        blocks_.push_back("blocks." + std::to_string(b) + ".layers." + std::to_string(l));
      }
      in = channels[b];
    }
    auto classifier = register_module("classifier", std::make_shared<nn::Module>());
    final_norm_ = classifier->register_module("2", nn::LayerNorm(nn::LayerNormOptions({kFeatureDim})));
    pre_logits_ = classifier->register_module("3", nn::Linear(kFeatureDim, kFeatureDim));
    blocks_.push_back("classifier.2");
    blocks_.push_back("classifier.3");
    head_ = make_head(head, kFeatureDim, "linear", 0.0);
    classifier->register_module("5", head_.ptr());
    init_conv_linear_normal(*this, 0.02);  // torchvision: the head too; norms ones / zeros
  }

  torch::Tensor feature_map(const torch::Tensor& images) override {
    torch::Tensor x = stem_out_(torch::gelu(stem_norm_(stem_conv_(images))));
    for (auto& layer : layers_) x = layer(x);
    return x;
  }
  torch::Tensor embed(const torch::Tensor& feature_map) override {
    const torch::Tensor pooled = torch::flatten(F::adaptive_avg_pool2d(feature_map, F::AdaptiveAvgPool2dFuncOptions(1)), 1);
    return torch::tanh(pre_logits_(final_norm_(pooled)));
  }
  torch::Tensor classify(const torch::Tensor& features) override { return head_.forward(features); }

  std::vector<std::string> blocks() const override { return blocks_; }
  std::string head_prefix() const override { return "classifier.5"; }
  std::int64_t feature_dim() const override { return kFeatureDim; }
  std::string architecture() const override { return "maxvit_t"; }

 private:
  nn::Conv2d stem_conv_{nullptr}, stem_out_{nullptr};
  nn::BatchNorm2d stem_norm_{nullptr};
  std::vector<MaxVitLayer> layers_;
  nn::LayerNorm final_norm_{nullptr};
  nn::Linear pre_logits_{nullptr};
  nn::AnyModule head_;
  std::vector<std::string> blocks_;
};

}  // namespace

Classifier make_maxvit_t(const HeadSpec& head) { return std::make_shared<MaxVitTImpl>(head); }

}  // namespace petal::models
