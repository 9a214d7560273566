#pragma once
// Builds the optimizer for a (partly) trainable network: one parameter group per trained block and
// decay class, so that each block gets its layer-wise learning rate and norms and biases can be
// exempt from weight decay.
#include <torch/optim/optimizer.h>

#include <memory>
#include <string>
#include <vector>

#include "stages/train/models/classifier.h"

namespace petal::train {

struct OptimizerSpec {
  std::string kind = "adam";  // sgd | adam | adamw | radam
  double lr = 1e-3;
  double momentum = 0.9;
  bool nesterov = false;
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
  double weight_decay = 0;
  bool decay_norm_and_bias = false;  // false: 1-D parameters (BatchNorm, biases) get no decay
};

// Which blocks train: the head always; backbone blocks from `first_trained_block` on (an index
// into ClassifierImpl::blocks(); blocks().size() = head only). Depth counts blocks down from the
// head (head 0, last block 1, ...), and a block's rate is lr x lr_multiplier^depth.
struct TrainableSpec {
  std::size_t first_trained_block = 0;
  double lr_multiplier = 1.0;
};

struct ParamGroupInfo {
  std::string block;  // a block prefix or the head prefix
  int depth = 0;
  bool decay = true;
  double lr_multiplier = 1.0;
  std::int64_t parameters = 0;  // number of scalars
};

struct OptimizerSetup {
  std::unique_ptr<torch::optim::Optimizer> optimizer;
  std::vector<ParamGroupInfo> groups;  // parallel to optimizer->param_groups()
  void set_learning_rate(double base);  // every group: base x its multiplier
  void set_momentum(double momentum);   // every group: SGD's momentum, or beta1 of Adam/AdamW/RAdam
};

// The index of `block` in model.blocks(), or throws std::invalid_argument listing the blocks.
std::size_t block_index(const models::ClassifierImpl& model, const std::string& block);

// Sets requires_grad on every parameter (frozen blocks: false) and builds the optimizer over the
// trainable ones. Throws std::invalid_argument if a parameter belongs to no block.
OptimizerSetup make_optimizer(models::ClassifierImpl& model, const TrainableSpec& trainable, const OptimizerSpec& spec);

// Builds an optimizer of `spec.kind` over ready-made groups; decay[i] says whether group i gets
// spec.weight_decay. (make_optimizer uses it; tests drive it on lone tensors.)
std::unique_ptr<torch::optim::Optimizer> make_optimizer_for_groups(const OptimizerSpec& spec,
                                                                   std::vector<torch::optim::OptimizerParamGroup> groups,
                                                                   const std::vector<bool>& decay);

// Puts the frozen blocks in eval mode (BatchNorm keeps its ImageNet statistics, no dropout) and the
// rest in train mode. Call instead of model.train().
void set_train_mode(models::ClassifierImpl& model, const TrainableSpec& trainable);

}  // namespace petal::train
