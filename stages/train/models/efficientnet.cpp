// EfficientNets built on the same B0 stage table from two reference implementations, each
// replicated layer for layer under its own parameter names so that its state dicts load unchanged:
//   efficientnet_b0     torchvision 0.14 (torchvision/models/efficientnet.py): SiLU, squeeze-and-
//                       excitation, PyTorch-style symmetric padding, BatchNorm eps 1e-5 / momentum 0.1.
//   efficientnet_lite0  the efficientnet_lite_pytorch package (model.py, utils.py), a port of
//   efficientnet_lite1  TensorFlow's EfficientNet-Lite: ReLU6, no squeeze-and-excitation, TensorFlow
//   efficientnet_lite2  "SAME" padding, BatchNorm eps 1e-3 / momentum 1 - 0.99, and a stem and head
//                       that are never width-scaled. One implementation for the three, parameterised
//                       by the package's width, depth, resolution and dropout (LiteVariant).
#include <torch/nn.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "stages/train/models/classifier.h"
#include "stages/train/models/model_zoo.h"

namespace petal::models {

namespace {

// ---------------------------------------------------------------------------------------------
// Shared by both: the EfficientNet-B0 stage table (width and depth multipliers 1.0, so no channel
// rounding or repeat scaling applies: efficientnet_b0 and efficientnet_lite0 use it as it is,
// lite1 and lite2 scale it in lite_stage_table) and the stochastic-depth schedule.

struct StageConfig {
  std::int64_t expand_ratio, kernel, stride, in_channels, out_channels, repeats;
};

// torchvision's bneck_conf rows for efficientnet_b0 = the package's block strings
// 'r1_k3_s11_e1_i32_o16', ..., 'r1_k3_s11_e6_i192_o320' (the Lite strings only drop "_se0.25").
const std::vector<StageConfig>& stage_table() {
  static const std::vector<StageConfig> stages = {
      {1, 3, 1, 32, 16, 1},  {6, 3, 2, 16, 24, 2},   {6, 5, 2, 24, 40, 2},   {6, 3, 2, 40, 80, 3},
      {6, 5, 1, 80, 112, 3}, {6, 5, 2, 112, 192, 4}, {6, 3, 1, 192, 320, 1},
  };
  return stages;
}

constexpr std::int64_t kStemChannels = 32;
constexpr std::int64_t kHeadChannels = 1280;   // torchvision: 4 * 320; Lite: round_filters(1280), skipped
constexpr double kDropout = 0.2;               // torchvision's dropout before the final Linear (Lite: LiteVariant)
constexpr double kStochasticDepthRate = 0.2;   // torchvision's stochastic_depth_prob = the package's drop_connect_rate
                                               // (0.2 for every Lite variant: efficientnet_lite()'s default)

std::int64_t total_blocks(const std::vector<StageConfig>& stages) {
  std::int64_t total = 0;
  for (const StageConfig& stage : stages) total += stage.repeats;
  return total;  // 16 in the B0 table; 21 in Lite1's and Lite2's
}

// Both references drop the residual branch of block `index` (of `total`) with probability
// rate * index / total (so block 0 never), only while training, and only in blocks that have a
// residual connection.
double stochastic_depth_rate(std::int64_t index, std::int64_t total) {
  return kStochasticDepthRate * static_cast<double>(index) / static_cast<double>(total);
}

// ---------------------------------------------------------------------------------------------
// efficientnet_b0 (torchvision)

// torchvision's Conv2dNormActivation with BatchNorm2d and SiLU(inplace=True) or no activation:
// bias-free conv with padding (k - 1) / 2, child "0"; BatchNorm2d, child "1".
class ConvBnSiLUImpl : public torch::nn::Module {
 public:
  ConvBnSiLUImpl(std::int64_t in, std::int64_t out, std::int64_t kernel, std::int64_t stride, std::int64_t groups,
                 bool activation)
      : activation_(activation) {
    conv_ = register_module("0", torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, kernel)
                                                       .stride(stride)
                                                       .padding((kernel - 1) / 2)
                                                       .groups(groups)
                                                       .bias(false)));
    bn_ = register_module("1", torch::nn::BatchNorm2d(out));
  }
  torch::Tensor forward(const torch::Tensor& x) {
    torch::Tensor y = bn_(conv_(x));
    if (activation_) torch::silu_(y);  // in place, as torchvision (BatchNorm's backward needs only its input)
    return y;
  }

 private:
  bool activation_;
  torch::nn::Conv2d conv_{nullptr};
  torch::nn::BatchNorm2d bn_{nullptr};
};
TORCH_MODULE(ConvBnSiLU);

// torchvision's SqueezeExcitation(activation=SiLU(inplace), scale_activation=Sigmoid): 1x1 convs
// with bias "fc1" (channels -> squeeze) and "fc2" (squeeze -> channels).
class SqueezeExcitationImpl : public torch::nn::Module {
 public:
  SqueezeExcitationImpl(std::int64_t channels, std::int64_t squeeze) {
    fc1_ = register_module("fc1", torch::nn::Conv2d(torch::nn::Conv2dOptions(channels, squeeze, 1)));
    fc2_ = register_module("fc2", torch::nn::Conv2d(torch::nn::Conv2dOptions(squeeze, channels, 1)));
  }
  torch::Tensor forward(const torch::Tensor& x) {
    torch::Tensor scale = fc1_(torch::adaptive_avg_pool2d(x, {1, 1}));
    torch::silu_(scale);
    scale = torch::sigmoid(fc2_(scale));
    return scale * x;
  }

 private:
  torch::nn::Conv2d fc1_{nullptr}, fc2_{nullptr};
};
TORCH_MODULE(SqueezeExcitation);

// torchvision's MBConv: "block" = [1x1 expand (only when it changes the width)], kxk depthwise,
// SqueezeExcitation (squeeze = max(1, in / 4)), 1x1 projection without activation. The residual
// (through row-mode stochastic depth) is added when stride is 1 and the width is unchanged.
class MBConvImpl : public torch::nn::Module {
 public:
  MBConvImpl(const StageConfig& config, std::int64_t in, std::int64_t stride, double stochastic_depth)
      : use_residual_(stride == 1 && in == config.out_channels), stochastic_depth_(stochastic_depth) {
    const std::int64_t expanded = in * config.expand_ratio;  // _make_divisible(in * t, 8): already a multiple of 8
    block_ = register_module("block", torch::nn::Sequential());
    if (expanded != in) block_->push_back(ConvBnSiLU(in, expanded, 1, 1, 1, true));
    block_->push_back(ConvBnSiLU(expanded, expanded, config.kernel, stride, expanded, true));
    block_->push_back(SqueezeExcitation(expanded, std::max<std::int64_t>(1, in / 4)));
    block_->push_back(ConvBnSiLU(expanded, config.out_channels, 1, 1, 1, false));
  }
  torch::Tensor forward(const torch::Tensor& input) {
    torch::Tensor result = block_->forward(input);
    if (!use_residual_) return result;
    if (is_training() && stochastic_depth_ > 0) {
      // torchvision.ops.stochastic_depth(mode="row"): keep each sample's branch with probability
      // 1 - p, rescaled by 1 / (1 - p).
      const double survival = 1.0 - stochastic_depth_;
      torch::Tensor noise = torch::empty({result.size(0), 1, 1, 1}, result.options()).bernoulli_(survival);
      if (survival > 0) noise.div_(survival);
      result = result * noise;
    }
    result += input;  // result is fresh (BatchNorm output or the product above)
    return result;
  }

 private:
  bool use_residual_;
  double stochastic_depth_;
  torch::nn::Sequential block_{nullptr};
};
TORCH_MODULE(MBConv);

// One stage of MBConvs, a Sequential ("features.K.0", "features.K.1", ...) that can itself sit in
// the features Sequential: LibTorch only nests modules whose forward() is not a template.
class StageImpl : public torch::nn::SequentialImpl {
 public:
  torch::Tensor forward(const torch::Tensor& x) { return torch::nn::SequentialImpl::forward(x); }
};
TORCH_MODULE(Stage);

//   features.0       ConvBnSiLU(3, 32, stride 2)                       "features.0.0.weight"
//   features.1 .. 7  one Sequential of MBConv per stage                "features.1.0.block.0.0.weight"
//   features.8       ConvBnSiLU(320, 1280, kernel 1)                   "features.8.0.weight"
//   classifier       the head (default: Dropout(0.2), Linear(1280, N)) "classifier.1.weight"
class EfficientNetB0Impl : public ClassifierImpl {
 public:
  explicit EfficientNetB0Impl(const HeadSpec& head) {
    features_ = register_module("features", torch::nn::Sequential());
    features_->push_back(ConvBnSiLU(3, kStemChannels, 3, 2, 1, true));
    const std::int64_t total = total_blocks(stage_table());
    std::int64_t index = 0;
    for (const StageConfig& config : stage_table()) {
      Stage stage;
      for (std::int64_t i = 0; i < config.repeats; ++i, ++index) {
        // Only a stage's first block strides and changes the width.
        const std::int64_t in = i == 0 ? config.in_channels : config.out_channels;
        stage->push_back(MBConv(config, in, i == 0 ? config.stride : 1, stochastic_depth_rate(index, total)));
      }
      features_->push_back(stage);
    }
    features_->push_back(ConvBnSiLU(stage_table().back().out_channels, kHeadChannels, 1, 1, 1, true));

    head_ = make_head(head, kHeadChannels, "dropout_linear", kDropout);
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
    return names;  // "features.0" .. "features.8"
  }
  std::string head_prefix() const override { return "classifier"; }
  std::int64_t feature_dim() const override { return kHeadChannels; }
  std::string architecture() const override { return "efficientnet_b0"; }

 private:
  // torchvision's loop over self.modules(), head included: convs kaiming-normal (fan_out) with zero
  // bias, BatchNorms ones / zeros, Linears uniform(+-1 / sqrt(out_features)) with zero bias.
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
        const double range = 1.0 / std::sqrt(static_cast<double>(linear->weight.size(0)));
        torch::nn::init::uniform_(linear->weight, -range, range);
        torch::nn::init::zeros_(linear->bias);
      }
    }
  }

  torch::nn::Sequential features_{nullptr};
  torch::nn::AnyModule head_;
};

// ---------------------------------------------------------------------------------------------
// efficientnet_lite0, efficientnet_lite1, efficientnet_lite2 (efficientnet_lite_pytorch)

// The variants as utils.efficientnet_params lists them for 'efficientnet-liteN': (width, depth,
// resolution, dropout). get_model_params hands them to utils.efficientnet_lite, whose
// drop_connect_rate stays at its default 0.2 for all (kStochasticDepthRate).
struct LiteVariant {
  const char* name;
  double width, depth;      // channel and repeat multipliers (round_filters, round_repeats)
  std::int64_t image_size;  // the package's image_size, from which its static padding is computed
  double dropout;           // the package's _dropout before _fc
};

const LiteVariant& lite_variant(int variant) {
  static const LiteVariant variants[] = {
      {"efficientnet_lite0", 1.0, 1.0, 224, 0.2},
      {"efficientnet_lite1", 1.0, 1.1, 240, 0.2},
      {"efficientnet_lite2", 1.1, 1.2, 260, 0.3},
  };
  if (variant < 0 || variant > 2) throw std::invalid_argument("no efficientnet_lite" + std::to_string(variant));
  return variants[variant];
}

// utils.round_filters (depth_divisor 8, min_depth None, so at least 8): channels * width to the
// nearest multiple of 8 (halves up), plus 8 if that lost more than 10%. At width 1.0 the B0
// table's channel counts (all multiples of 8) stay as they are.
std::int64_t round_filters(std::int64_t channels, double width) {
  constexpr std::int64_t kDivisor = 8;
  const double scaled = static_cast<double>(channels) * width;
  std::int64_t rounded =
      std::max<std::int64_t>(kDivisor, static_cast<std::int64_t>(scaled + kDivisor / 2.0) / kDivisor * kDivisor);
  if (static_cast<double>(rounded) < 0.9 * scaled) rounded += kDivisor;
  return rounded;
}

// utils.round_repeats: ceil(depth * repeats) in double precision, as Python computes it (so
// 1.1 * 2 = 2.2000000000000002 and 1.2 * 3 = 3.5999999999999996 both round up).
std::int64_t round_repeats(std::int64_t repeats, double depth) {
  return static_cast<std::int64_t>(std::ceil(depth * static_cast<double>(repeats)));
}

// The stage table EfficientNet.__init__ builds for a variant with fix_head_stem: every stage's
// input and output channels go through round_filters, except the first stage's input, which is
// the un-scaled stem (32); repeats go through round_repeats except in the first and the last
// stage. For Lite0 this is stage_table() itself.
std::vector<StageConfig> lite_stage_table(const LiteVariant& variant) {
  std::vector<StageConfig> stages = stage_table();
  for (std::size_t i = 0; i < stages.size(); ++i) {
    StageConfig& stage = stages[i];
    const bool first = i == 0, last = i + 1 == stages.size();
    stage.in_channels = first ? kStemChannels : round_filters(stage.in_channels, variant.width);
    stage.out_channels = round_filters(stage.out_channels, variant.width);
    if (!first && !last) stage.repeats = round_repeats(stage.repeats, variant.depth);
  }
  return stages;
}

torch::nn::BatchNorm2dOptions lite_batch_norm(std::int64_t channels) {
  // GlobalParams(batch_norm_momentum=0.99, batch_norm_epsilon=1e-3); PyTorch momentum = 1 - TF momentum.
  return torch::nn::BatchNorm2dOptions(channels).eps(1e-3).momentum(1.0 - 0.99);
}

// EfficientNet.from_name('efficientnet-liteN') builds every conv as Conv2dStaticSamePadding for
// the variant's image_size (224, 240 or 260): TensorFlow "SAME" padding computed ONCE from the
// layer sizes at that resolution (224, 112, ..., 7 for Lite0) and then applied to inputs of any
// size. So the padding is a constant of each layer: stride 1 pads (k - 1) / 2 on each side;
// stride 2 pads k - 2 in total on an even size, the extra pixel right and bottom ((0, 1) for
// k = 3, (1, 2) for k = 5), but k - 1, split evenly, on an odd size (Lite0 never meets one; Lite1
// meets its 15-pixel map, Lite2 its 65-, 33- and 17-pixel maps).
// A conv registered under the package's name plus its static "SAME" padding. Symmetric padding is
// left to the conv itself (same result, no padded copy); asymmetric padding is applied with
// constant_pad_nd (= F.pad) before an unpadded conv, as the package's ZeroPad2d does.
class SameConv {
 public:
  SameConv() = default;
  SameConv(torch::nn::Module& owner, const std::string& name, std::int64_t in, std::int64_t out, std::int64_t kernel,
           std::int64_t stride, std::int64_t groups, std::int64_t image_size) {
    // utils.Conv2dStaticSamePadding: out = ceil(i / s); pad = max((out - 1) * s + k - i, 0).
    const std::int64_t out_size = (image_size + stride - 1) / stride;
    const std::int64_t pad = std::max<std::int64_t>((out_size - 1) * stride + kernel - image_size, 0);
    const std::int64_t before = pad / 2, after = pad - pad / 2;
    symmetric_ = before == after;
    if (!symmetric_) pad_ = {before, after, before, after};  // (left, right, top, bottom)
    conv_ = owner.register_module(name, torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, kernel)
                                                              .stride(stride)
                                                              .padding(symmetric_ ? before : 0)
                                                              .groups(groups)
                                                              .bias(false)));
  }
  torch::Tensor operator()(const torch::Tensor& x) {
    return symmetric_ ? conv_(x) : conv_(torch::constant_pad_nd(x, pad_, 0));
  }

 private:
  bool symmetric_ = true;
  std::vector<std::int64_t> pad_;
  torch::nn::Conv2d conv_{nullptr};
};

// The package's MBConvBlock without squeeze-and-excitation (use_se=False for Lite):
// [_expand_conv, _bn0 (only when expand_ratio != 1)], _depthwise_conv, _bn1, _project_conv, _bn2,
// ReLU6 after _bn0 and _bn1. The residual (id_skip, stride 1, unchanged width) goes through
// drop_connect while training.
class LiteMBConvImpl : public torch::nn::Module {
 public:
  LiteMBConvImpl(const StageConfig& config, std::int64_t in, std::int64_t stride, std::int64_t image_size,
                 double drop_connect)
      : expand_(config.expand_ratio != 1),
        use_residual_(stride == 1 && in == config.out_channels),
        drop_connect_(drop_connect) {
    const std::int64_t expanded = in * config.expand_ratio;
    if (expand_) {
      expand_conv_ = SameConv(*this, "_expand_conv", in, expanded, 1, 1, 1, image_size);
      bn0_ = register_module("_bn0", torch::nn::BatchNorm2d(lite_batch_norm(expanded)));
    }
    depthwise_conv_ = SameConv(*this, "_depthwise_conv", expanded, expanded, config.kernel, stride, expanded, image_size);
    bn1_ = register_module("_bn1", torch::nn::BatchNorm2d(lite_batch_norm(expanded)));
    const std::int64_t out_size = (image_size + stride - 1) / stride;
    project_conv_ = SameConv(*this, "_project_conv", expanded, config.out_channels, 1, 1, 1, out_size);
    bn2_ = register_module("_bn2", torch::nn::BatchNorm2d(lite_batch_norm(config.out_channels)));
  }
  torch::Tensor forward(const torch::Tensor& inputs) {
    torch::Tensor x = inputs;
    if (expand_) {
      x = bn0_(expand_conv_(x));
      torch::relu6_(x);  // the package's ReLU6 is not in place; in place here computes the same
    }
    x = bn1_(depthwise_conv_(x));
    torch::relu6_(x);
    x = bn2_(project_conv_(x));
    if (!use_residual_) return x;
    if (is_training() && drop_connect_ > 0) {
      // utils.drop_connect: floor(keep + U[0, 1)) per sample, output = x / keep * mask.
      const double keep = 1.0 - drop_connect_;
      torch::Tensor mask = torch::floor(keep + torch::rand({x.size(0), 1, 1, 1}, x.options()));
      x = x / keep * mask;
    }
    x += inputs;  // x is fresh (BatchNorm output or the product above)
    return x;
  }

 private:
  bool expand_, use_residual_;
  double drop_connect_;
  SameConv expand_conv_, depthwise_conv_, project_conv_;
  torch::nn::BatchNorm2d bn0_{nullptr}, bn1_{nullptr}, bn2_{nullptr};
};
TORCH_MODULE(LiteMBConv);

//   _conv_stem, _bn0      3 -> 32, 3x3 stride 2, ReLU6             "_conv_stem.weight", "_bn0.*"
//   _blocks.0 .. N - 1    LiteMBConv (N = 16 for Lite0, 21 for     "_blocks.1._expand_conv.weight"
//                         Lite1 and Lite2)
//   _conv_head, _bn1      320 (Lite2: 352) -> 1280, 1x1, ReLU6     "_conv_head.weight", "_bn1.*"
//   _fc                   the head (default: bare Linear(1280, N)) "_fc.weight"
// The package's own Dropout (0.2; Lite2: 0.3) sits between pooling and _fc as a separate module
// (_dropout, no parameters); it is kept here the same way, outside the head, so a linear head
// keeps the bare "_fc.weight" names whatever the rate.
class EfficientNetLiteImpl : public ClassifierImpl {
 public:
  EfficientNetLiteImpl(const LiteVariant& variant, const HeadSpec& head) : name_(variant.name) {
    const std::vector<StageConfig> stages = lite_stage_table(variant);
    std::int64_t size = variant.image_size;
    conv_stem_ = SameConv(*this, "_conv_stem", 3, kStemChannels, 3, 2, 1, size);
    bn0_ = register_module("_bn0", torch::nn::BatchNorm2d(lite_batch_norm(kStemChannels)));
    size = (size + 1) / 2;

    blocks_ = register_module("_blocks", torch::nn::ModuleList());
    const std::int64_t total = total_blocks(stages);
    std::int64_t index = 0;
    for (const StageConfig& config : stages) {
      for (std::int64_t i = 0; i < config.repeats; ++i, ++index) {
        // The first block of a stage strides, changes the width and sees the stage's input size;
        // the others see its output size (their padding does not depend on it).
        const bool first = i == 0;
        auto block = LiteMBConv(config, first ? config.in_channels : config.out_channels, first ? config.stride : 1,
                                size, stochastic_depth_rate(index, total));
        blocks_->push_back(block);
        block_list_.push_back(block);
        if (first) size = (size + config.stride - 1) / config.stride;
      }
    }
    conv_head_ = SameConv(*this, "_conv_head", stages.back().out_channels, kHeadChannels, 1, 1, 1, size);
    bn1_ = register_module("_bn1", torch::nn::BatchNorm2d(lite_batch_norm(kHeadChannels)));

    // A linear head is the package's _dropout + bare _fc; an MLP head brings its own dropout.
    HeadSpec fc = head;
    if (head.hidden.empty()) {
      dropout_ = head.dropout < 0 ? variant.dropout : head.dropout;
      fc.dropout = 0.0;
    }
    head_ = make_head(fc, kHeadChannels, "linear", variant.dropout);
    register_module("_fc", head_.ptr());
    // No initialisation loop: the package keeps PyTorch's default initialisation, which LibTorch's
    // modules reproduce.
  }

  torch::Tensor feature_map(const torch::Tensor& images) override {
    torch::Tensor x = bn0_(conv_stem_(images));
    torch::relu6_(x);
    for (auto& block : block_list_) x = block->forward(x);
    x = bn1_(conv_head_(x));
    torch::relu6_(x);
    return x;
  }
  torch::Tensor embed(const torch::Tensor& feature_map) override {
    return torch::flatten(torch::adaptive_avg_pool2d(feature_map, {1, 1}), 1);
  }
  torch::Tensor classify(const torch::Tensor& features) override {
    if (dropout_ > 0 && is_training()) return head_.forward(torch::dropout(features, dropout_, true));
    return head_.forward(features);
  }

  std::vector<std::string> blocks() const override {
    std::vector<std::string> names = {"_conv_stem", "_bn0"};
    for (std::size_t i = 0; i < block_list_.size(); ++i) names.push_back("_blocks." + std::to_string(i));
    names.push_back("_conv_head");
    names.push_back("_bn1");
    return names;
  }
  std::string head_prefix() const override { return "_fc"; }
  std::int64_t feature_dim() const override { return kHeadChannels; }
  std::string architecture() const override { return name_; }

 private:
  std::string name_;
  SameConv conv_stem_, conv_head_;
  torch::nn::BatchNorm2d bn0_{nullptr}, bn1_{nullptr};
  torch::nn::ModuleList blocks_{nullptr};
  std::vector<LiteMBConv> block_list_;
  double dropout_ = 0.0;
  torch::nn::AnyModule head_;
};

}  // namespace

Classifier make_efficientnet_b0(const HeadSpec& head) { return std::make_shared<EfficientNetB0Impl>(head); }
Classifier make_efficientnet_lite(int variant, const HeadSpec& head) {
  return std::make_shared<EfficientNetLiteImpl>(lite_variant(variant), head);
}

}  // namespace petal::models
