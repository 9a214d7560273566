#include "stages/train/optim/optimizer_setup.h"

#include <torch/optim/adam.h>
#include <torch/optim/adamw.h>
#include <torch/optim/sgd.h>

#include <cmath>
#include <map>
#include <stdexcept>

#include "stages/train/optim/radam.h"

namespace petal::train {

namespace {

// `name` is `prefix` itself (a block that is one parameter: vit_b_16's "class_token") or lies under it.
bool has_prefix(const std::string& name, const std::string& prefix) {
  if (name == prefix) return true;
  return name.size() > prefix.size() && name.compare(0, prefix.size(), prefix) == 0 && name[prefix.size()] == '.';
}

// The position of the block owning `name`: 0..blocks-1, blocks.size() for the head, -1 for none.
// The longest matching prefix wins ("features.1" must not claim "features.10.weight").
int owner_of(const std::string& name, const std::vector<std::string>& blocks, const std::string& head) {
  int owner = -1;
  std::size_t longest = 0;
  for (std::size_t i = 0; i < blocks.size(); ++i) {
    if (has_prefix(name, blocks[i]) && blocks[i].size() > longest) {
      owner = static_cast<int>(i);
      longest = blocks[i].size();
    }
  }
  if (has_prefix(name, head) && head.size() > longest) owner = static_cast<int>(blocks.size());
  return owner;
}

}  // namespace

std::unique_ptr<torch::optim::Optimizer> make_optimizer_for_groups(const OptimizerSpec& spec,
                                                                   std::vector<torch::optim::OptimizerParamGroup> groups,
                                                                   const std::vector<bool>& decays) {
  // Each group carries its own options (its decay); its lr is set before every step.
  for (std::size_t i = 0; i < groups.size(); ++i) {
    const double decay = decays.at(i) ? spec.weight_decay : 0.0;
    if (spec.kind == "sgd") {
      groups[i].set_options(std::make_unique<torch::optim::SGDOptions>(
          torch::optim::SGDOptions(spec.lr).momentum(spec.momentum).nesterov(spec.nesterov).weight_decay(decay)));
    } else if (spec.kind == "adam") {
      groups[i].set_options(std::make_unique<torch::optim::AdamOptions>(
          torch::optim::AdamOptions(spec.lr).betas({spec.beta1, spec.beta2}).eps(spec.eps).weight_decay(decay)));
    } else if (spec.kind == "adamw") {
      groups[i].set_options(std::make_unique<torch::optim::AdamWOptions>(
          torch::optim::AdamWOptions(spec.lr).betas({spec.beta1, spec.beta2}).eps(spec.eps).weight_decay(decay)));
    } else if (spec.kind == "radam") {
      groups[i].set_options(
          std::make_unique<RAdamOptions>(RAdamOptions(spec.lr).betas({spec.beta1, spec.beta2}).eps(spec.eps).weight_decay(decay)));
    }
  }
  if (spec.kind == "sgd") {
    return std::make_unique<torch::optim::SGD>(std::move(groups),
                                               torch::optim::SGDOptions(spec.lr).momentum(spec.momentum).nesterov(spec.nesterov));
  }
  if (spec.kind == "adam") return std::make_unique<torch::optim::Adam>(std::move(groups), torch::optim::AdamOptions(spec.lr));
  if (spec.kind == "adamw") return std::make_unique<torch::optim::AdamW>(std::move(groups), torch::optim::AdamWOptions(spec.lr));
  if (spec.kind == "radam") return std::make_unique<RAdam>(std::move(groups), RAdamOptions(spec.lr));
  throw std::invalid_argument("unknown optimizer '" + spec.kind + "' (known: sgd, adam, adamw, radam)");
}

void OptimizerSetup::set_learning_rate(double base) {
  auto& param_groups = optimizer->param_groups();
  for (std::size_t i = 0; i < param_groups.size(); ++i) param_groups[i].options().set_lr(base * groups[i].lr_multiplier);
}

void OptimizerSetup::set_momentum(double momentum) {
  for (auto& group : optimizer->param_groups()) {
    auto& options = group.options();
    if (auto* sgd = dynamic_cast<torch::optim::SGDOptions*>(&options)) {
      sgd->momentum(momentum);
    } else if (auto* adam = dynamic_cast<torch::optim::AdamOptions*>(&options)) {
      adam->betas({momentum, std::get<1>(adam->betas())});
    } else if (auto* adamw = dynamic_cast<torch::optim::AdamWOptions*>(&options)) {
      adamw->betas({momentum, std::get<1>(adamw->betas())});
    } else if (auto* radam = dynamic_cast<RAdamOptions*>(&options)) {
      radam->betas({momentum, std::get<1>(radam->betas())});
    }
  }
}

std::size_t block_index(const models::ClassifierImpl& model, const std::string& block) {
  const auto blocks = model.blocks();
  for (std::size_t i = 0; i < blocks.size(); ++i) {
    if (blocks[i] == block) return i;
  }
  std::string known;
  for (const auto& name : blocks) known += (known.empty() ? "" : ", ") + name;
  throw std::invalid_argument("'" + block + "' is not a block of " + model.architecture() + " (blocks, input to output: " +
                              known + ")");
}

OptimizerSetup make_optimizer(models::ClassifierImpl& model, const TrainableSpec& trainable, const OptimizerSpec& spec) {
  const auto blocks = model.blocks();
  const std::string head = model.head_prefix();
  // Groups keyed by (owner, decay), in block order so the optimizer's state has a stable layout.
  std::map<std::pair<int, bool>, std::vector<torch::Tensor>> grouped;
  for (auto& item : model.named_parameters(true)) {
    const std::string& name = item.key();
    torch::Tensor& param = item.value();
    const int owner = owner_of(name, blocks, head);
    if (owner < 0) throw std::invalid_argument("parameter " + name + " belongs to no block of " + model.architecture());
    const bool trained = static_cast<std::size_t>(owner) >= trainable.first_trained_block;
    param.set_requires_grad(trained);
    if (!trained) continue;
    const bool decay = spec.decay_norm_and_bias || param.dim() > 1;
    grouped[{owner, decay}].push_back(param);
  }
  std::vector<torch::optim::OptimizerParamGroup> groups;
  OptimizerSetup setup;
  for (auto& [key, params] : grouped) {
    ParamGroupInfo info;
    const int owner = key.first;
    info.block = static_cast<std::size_t>(owner) == blocks.size() ? head : blocks[owner];
    info.depth = static_cast<int>(blocks.size()) - owner;
    info.decay = key.second;
    info.lr_multiplier = std::pow(trainable.lr_multiplier, info.depth);
    for (const auto& p : params) info.parameters += p.numel();
    setup.groups.push_back(info);
    groups.emplace_back(std::move(params));
  }
  std::vector<bool> decays;
  for (const auto& info : setup.groups) decays.push_back(info.decay);
  setup.optimizer = make_optimizer_for_groups(spec, std::move(groups), decays);
  setup.set_learning_rate(spec.lr);
  return setup;
}

void set_train_mode(models::ClassifierImpl& model, const TrainableSpec& trainable) {
  model.train();
  const auto blocks = model.blocks();
  const auto modules = model.named_modules("", false);
  for (std::size_t i = 0; i < std::min(trainable.first_trained_block, blocks.size()); ++i) {
    if (const auto* found = modules.find(blocks[i])) (*found)->eval();
  }
}

}  // namespace petal::train
