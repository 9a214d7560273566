// ViT-B/16 as torchvision 0.14 builds it (torchvision/models/vision_transformer.py): the same
// parameters under the same names, so its state dicts load unchanged.
//   conv_proj                      Conv2d(3, 768, 16, stride 16): the patch embedding
//   class_token                    [1, 1, 768]
//   encoder.pos_embedding          [1, 197, 768] for 224 px (14 x 14 patches + the class token)
//   encoder.layers.encoder_layer_i 12 pre-norm blocks: ln_1, self_attention (in_proj_weight/bias,
//                                  out_proj), ln_2, mlp ("mlp.0", GELU, "mlp.3")
//   encoder.ln                     the final LayerNorm (eps 1e-6 throughout)
//   heads.head                     the head, on the class token's output
// Inputs other than 224 px (any multiple of 16) get the position embedding of the patch grid
// resized bicubically with aligned corners, as torchvision's interpolate_embeddings does when it
// adapts a checkpoint; here it happens in forward, so the stored parameter keeps its 224 px shape
// and the published weights load whatever the image size.
#include <torch/nn/functional/upsampling.h>
#include <torch/nn/init.h>
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

namespace petal::models {

namespace {

namespace nn = torch::nn;

constexpr std::int64_t kPatch = 16;
constexpr std::int64_t kHidden = 768;
constexpr std::int64_t kMlp = 3072;
constexpr std::int64_t kHeads = 12;
constexpr std::int64_t kLayers = 12;
constexpr std::int64_t kTrainedGrid = 14;  // 224 px / 16: the grid the position embedding is stored for
constexpr double kLayerNormEps = 1e-6;

nn::LayerNorm layer_norm() { return nn::LayerNorm(nn::LayerNormOptions({kHidden}).eps(kLayerNormEps)); }

// torch.nn.MultiheadAttention's parameters (embed_dim = kdim = vdim, bias, no bias_k/v) and its
// computation for self-attention. Written out because LibTorch's module also registers undefined
// q/k/v projection parameters, which every parameter walk would then have to skip.
class SelfAttentionImpl : public nn::Module {
 public:
  SelfAttentionImpl() {
    in_proj_weight_ = register_parameter("in_proj_weight", torch::empty({3 * kHidden, kHidden}));
    in_proj_bias_ = register_parameter("in_proj_bias", torch::zeros({3 * kHidden}));
    out_proj_ = register_module("out_proj", nn::Linear(kHidden, kHidden));
    torch::NoGradGuard no_grad;
    nn::init::xavier_uniform_(in_proj_weight_);
    out_proj_->bias.zero_();
  }

  torch::Tensor forward(const torch::Tensor& x) {
    const std::int64_t batch = x.size(0), length = x.size(1), head_dim = kHidden / kHeads;
    // [N, L, 3, heads, head_dim] -> three [N, heads, L, head_dim]
    const auto qkv = torch::linear(x, in_proj_weight_, in_proj_bias_).view({batch, length, 3, kHeads, head_dim}).permute({2, 0, 3, 1, 4});
    const torch::Tensor q = qkv[0] / std::sqrt(static_cast<double>(head_dim));
    const torch::Tensor attention = torch::matmul(q, qkv[1].transpose(-2, -1)).softmax(-1);
    const torch::Tensor mixed = torch::matmul(attention, qkv[2]).transpose(1, 2).reshape({batch, length, kHidden});
    return out_proj_(mixed);
  }

 private:
  torch::Tensor in_proj_weight_, in_proj_bias_;
  nn::Linear out_proj_{nullptr};
};
TORCH_MODULE(SelfAttention);

class EncoderBlockImpl : public nn::Module {
 public:
  EncoderBlockImpl()
      : ln_1_(register_module("ln_1", layer_norm())),
        self_attention_(register_module("self_attention", SelfAttention())),
        ln_2_(register_module("ln_2", layer_norm())) {
    // torchvision's MLPBlock: Sequential(Linear, GELU, Dropout, Linear, Dropout); only 0 and 3 hold parameters.
    auto mlp = register_module("mlp", std::make_shared<nn::Module>());
    fc1_ = mlp->register_module("0", nn::Linear(kHidden, kMlp));
    fc2_ = mlp->register_module("3", nn::Linear(kMlp, kHidden));
    torch::NoGradGuard no_grad;
    for (nn::LinearImpl* linear : {fc1_.get(), fc2_.get()}) {
      nn::init::xavier_uniform_(linear->weight);
      linear->bias.normal_(0.0, 1e-6);
    }
  }

  torch::Tensor forward(const torch::Tensor& input) {
    const torch::Tensor x = self_attention_(ln_1_(input)) + input;
    return x + fc2_(torch::gelu(fc1_(ln_2_(x))));
  }

 private:
  nn::LayerNorm ln_1_;
  SelfAttention self_attention_;
  nn::LayerNorm ln_2_;
  nn::Linear fc1_{nullptr}, fc2_{nullptr};
};
TORCH_MODULE(EncoderBlock);

class VisionTransformerImpl : public ClassifierImpl {
 public:
  explicit VisionTransformerImpl(const HeadSpec& head) {
    class_token_ = register_parameter("class_token", torch::zeros({1, 1, kHidden}));
    conv_proj_ = register_module("conv_proj", nn::Conv2d(nn::Conv2dOptions(3, kHidden, kPatch).stride(kPatch)));
    auto encoder = register_module("encoder", std::make_shared<nn::Module>());
    pos_embedding_ = encoder->register_parameter(
        "pos_embedding", torch::empty({1, kTrainedGrid * kTrainedGrid + 1, kHidden}).normal_(0.0, 0.02));
    auto layers = encoder->register_module("layers", std::make_shared<nn::Module>());
    for (std::int64_t i = 0; i < kLayers; ++i) {
      layers_.push_back(layers->register_module("encoder_layer_" + std::to_string(i), EncoderBlock()));
    }
    ln_ = encoder->register_module("ln", layer_norm());
    auto heads = register_module("heads", std::make_shared<nn::Module>());
    head_ = make_head(head, kHidden, "linear", 0.0);
    heads->register_module("head", head_.ptr());
    torch::NoGradGuard no_grad;
    // torchvision: truncated normal with std sqrt(1 / fan_in), cut at +-2 (about 50 std: a plain normal).
    conv_proj_->weight.normal_(0.0, std::sqrt(1.0 / static_cast<double>(3 * kPatch * kPatch))).clamp_(-2.0, 2.0);
    conv_proj_->bias.zero_();
  }

  // The class token's final representation [N, 768, 1, 1]: a ViT has no spatial map after its
  // last block (Grad-CAM uses cam_graph's patch grid instead).
  torch::Tensor feature_map(const torch::Tensor& images) override {
    torch::Tensor tokens = embed_patches(images);
    for (auto& layer : layers_) tokens = layer(tokens);
    return ln_(tokens.select(1, 0)).unsqueeze(-1).unsqueeze(-1);
  }
  torch::Tensor embed(const torch::Tensor& feature_map) override { return torch::flatten(feature_map, 1); }
  torch::Tensor classify(const torch::Tensor& features) override { return head_.forward(features); }

  // Grad-CAM on the patch tokens entering the last encoder block (the only block whose attention
  // still mixes them into the class token), as a [N, 768, h, w] grid.
  CamGraph cam_graph(const torch::Tensor& images) override {
    std::int64_t grid_h = 0, grid_w = 0;
    torch::Tensor tokens;
    {
      torch::NoGradGuard no_grad;
      tokens = embed_patches(images, &grid_h, &grid_w);
      for (std::size_t i = 0; i + 1 < layers_.size(); ++i) tokens = layers_[i](tokens);
    }
    const std::int64_t batch = tokens.size(0);
    CamGraph graph;
    graph.map = tokens.slice(1, 1).transpose(1, 2).reshape({batch, kHidden, grid_h, grid_w}).detach().requires_grad_(true);
    torch::AutoGradMode enable(true);
    const torch::Tensor sequence = torch::cat({tokens.slice(1, 0, 1), graph.map.flatten(2).transpose(1, 2)}, 1);
    graph.logits = classify(ln_(layers_.back()(sequence).select(1, 0)));
    return graph;
  }

  std::vector<std::string> blocks() const override {
    std::vector<std::string> names = {"conv_proj", "class_token", "encoder.pos_embedding"};
    for (std::int64_t i = 0; i < kLayers; ++i) names.push_back("encoder.layers.encoder_layer_" + std::to_string(i));
    names.push_back("encoder.ln");
    return names;
  }
  std::string head_prefix() const override { return "heads.head"; }
  std::int64_t feature_dim() const override { return kHidden; }
  std::string architecture() const override { return "vit_b_16"; }

 private:
  // Patch embedding, class token and position embedding: [N, 1 + h * w, 768].
  torch::Tensor embed_patches(const torch::Tensor& images, std::int64_t* grid_h = nullptr, std::int64_t* grid_w = nullptr) {
    if (images.size(2) % kPatch != 0 || images.size(3) % kPatch != 0) {
      throw std::invalid_argument("vit_b_16 needs an image size that is a multiple of 16 (its patch size), got " +
                                  std::to_string(images.size(2)) + "x" + std::to_string(images.size(3)));
    }
    const torch::Tensor patches = conv_proj_(images);  // [N, 768, h, w]
    const std::int64_t batch = patches.size(0), h = patches.size(2), w = patches.size(3);
    if (grid_h) *grid_h = h;
    if (grid_w) *grid_w = w;
    const torch::Tensor tokens =
        torch::cat({class_token_.expand({batch, -1, -1}), patches.flatten(2).transpose(1, 2)}, 1);
    return tokens + position_embedding(h, w);
  }

  torch::Tensor position_embedding(std::int64_t h, std::int64_t w) const {
    if (h == kTrainedGrid && w == kTrainedGrid) return pos_embedding_;
    const torch::Tensor grid = pos_embedding_.slice(1, 1).permute({0, 2, 1}).reshape({1, kHidden, kTrainedGrid, kTrainedGrid});
    const torch::Tensor resized = nn::functional::interpolate(
        grid, nn::functional::InterpolateFuncOptions().size(std::vector<std::int64_t>{h, w}).mode(torch::kBicubic).align_corners(true));
    return torch::cat({pos_embedding_.slice(1, 0, 1), resized.reshape({1, kHidden, h * w}).permute({0, 2, 1})}, 1);
  }

  torch::Tensor class_token_, pos_embedding_;
  nn::Conv2d conv_proj_{nullptr};
  std::vector<EncoderBlock> layers_;
  nn::LayerNorm ln_{nullptr};
  nn::AnyModule head_;
};

}  // namespace

Classifier make_vit_b_16(const HeadSpec& head) { return std::make_shared<VisionTransformerImpl>(head); }

}  // namespace petal::models
