#pragma once
// The model zoo's common shape: a torchvision-compatible backbone plus a replaceable head.
#include <torch/nn/module.h>
#include <torch/nn/modules/container/any.h>

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace petal::models {

// The classification head that replaces the backbone's original one.
//   hidden empty:  [Dropout(dropout)] -> Linear(feature_dim, num_classes)
//   hidden = {512}: Linear(feature_dim, 512) -> [BatchNorm1d] -> ReLU -> [Dropout] -> Linear(512, num_classes)
// With a linear head, the parameter names are the architecture's own (resnet "fc.weight",
// mobilenet_v2 "classifier.1.weight", ...), so a torchvision state dict loads into it unchanged.
struct HeadSpec {
  std::int64_t num_classes = 1000;
  std::vector<std::int64_t> hidden;  // sizes of hidden layers, e.g. {512} for 2048 -> 512 -> N
  bool batch_norm = true;            // BatchNorm1d after each hidden Linear
  double dropout = 0.0;              // MLP: after each hidden ReLU; linear head: before the Linear
                                     // (< 0: the architecture's torchvision default, e.g. 0.2 for mobilenet_v2)
};

struct ModelSpec {
  std::string architecture;  // one of architecture_names() (stages/train/model_names.h)
  HeadSpec head;
};

// A network = feature_map -> embed -> classify. Parameter and buffer names are torchvision's (or,
// for efficientnet_lite0/1/2, those of the efficientnet_lite_pytorch package), so their state dicts
// load directly. In-place ReLU and residual adds are used where torchvision uses them (speed).
class ClassifierImpl : public torch::nn::Module {
 public:
  // The last convolutional feature map [N, C, h, w]: Grad-CAM's target.
  virtual torch::Tensor feature_map(const torch::Tensor& images) = 0;
  // Pools the feature map into the head's input [N, feature_dim()] (VGG: also its fixed fc layers).
  virtual torch::Tensor embed(const torch::Tensor& feature_map) = 0;
  // The head: features [N, feature_dim()] -> logits [N, num_classes].
  virtual torch::Tensor classify(const torch::Tensor& features) = 0;

  torch::Tensor features(const torch::Tensor& images) { return embed(feature_map(images)); }
  torch::Tensor forward(const torch::Tensor& images) { return classify(features(images)); }

  // Name prefixes of the backbone's blocks, from input to output (resnet: "conv1", "bn1",
  // "layer1", ..., "layer4"; mobilenet_v2: "features.0", ..., "features.18"). Every backbone
  // parameter and buffer name starts with exactly one of them followed by '.', or is one of them
  // (vit_b_16's "class_token": a block may be a single parameter). The head is not listed.
  virtual std::vector<std::string> blocks() const = 0;
  // Name prefix of the head ("fc", "classifier", "classifier.6", "_fc").
  virtual std::string head_prefix() const = 0;
  // Prefixes of the published weights that petal replaces by design, so a pretrained file's
  // tensors under them are skipped: the head, and inception_v3's auxiliary classifier's Linear.
  virtual std::vector<std::string> replaced_prefixes() const { return {head_prefix()}; }

  // The logits, plus those of an auxiliary classifier while it is trained (inception_v3's
  // "AuxLogits" in training mode); the second tensor is undefined otherwise.
  virtual std::pair<torch::Tensor, torch::Tensor> forward_with_auxiliary(const torch::Tensor& images) {
    return {forward(images), torch::Tensor()};
  }

  // Grad-CAM's view of the network: `map` [N, C, h, w] is a leaf that requires grad and `logits`
  // were computed from it. Default: the last convolutional feature map. vit_b_16 overrides it
  // with its patch tokens entering the last encoder block, laid out as the patch grid.
  struct CamGraph {
    torch::Tensor map, logits;
  };
  virtual CamGraph cam_graph(const torch::Tensor& images);
  virtual std::int64_t feature_dim() const = 0;
  virtual std::string architecture() const = 0;
};

using Classifier = std::shared_ptr<ClassifierImpl>;

// Builds the head described by `spec` for `in_features` inputs. `linear_layout` is how the
// architecture wraps a plain linear head: "linear" (a bare Linear: resnet, densenet, lite0/1/2) or
// "dropout_linear" (Sequential(Dropout, Linear): mobilenet_v2, efficientnet_b0).
torch::nn::AnyModule make_head(const HeadSpec& spec, std::int64_t in_features, const std::string& linear_layout,
                               double default_dropout);

}  // namespace petal::models
