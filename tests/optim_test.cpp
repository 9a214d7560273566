// Optimizers against PyTorch's numerics (tests/parity/optimizer_steps.py), parameter groups with
// layer-wise multipliers and decay exemptions, and optimizer state surviving save/load.
#include <torch/optim/adam.h>
#include <torch/optim/optimizer.h>
#include <torch/serialize/archive.h>

#include "tests/support/torch_doctest.h"

#include <cmath>
#include <nlohmann/json.hpp>

#include "stages/train/models/model_zoo.h"
#include "stages/train/optim/optimizer_setup.h"
#include "tests/support/python_reference.h"
#include "tests/support/test_support.h"

namespace petal {
namespace {

const std::vector<double> kP0 = {0.5, -1.25, 2.0, 0.0, -0.3, 1e-3};

torch::Tensor gradient(const torch::Tensor& param, int step) {
  std::vector<double> base;
  for (std::size_t i = 0; i < kP0.size(); ++i) base.push_back(std::sin(step + static_cast<double>(i)) * 0.5);
  return torch::tensor(base, torch::kFloat64) + param.detach() * 0.1;
}

const nlohmann::json& pytorch_steps() {
  static const nlohmann::json steps = [] {
    test::TempDir dir;
    test::run_python_reference("optimizer_steps.py", {(dir / "steps.json").string()});
    return nlohmann::json::parse(test::read_file(dir / "steps.json"));
  }();
  return steps;
}

// The optimizer is built from the spec exactly as make_optimizer builds it, over one lone tensor.
void check_against_pytorch(const std::string& name, train::OptimizerSpec spec) {
  torch::Tensor param = torch::tensor(kP0, torch::kFloat64).requires_grad_(true);
  std::vector<torch::optim::OptimizerParamGroup> groups;
  groups.emplace_back(std::vector<torch::Tensor>{param});
  auto optimizer = train::make_optimizer_for_groups(spec, std::move(groups), {true});
  const auto& expected = pytorch_steps().at(name);
  double worst = 0;
  for (int step = 0; step < static_cast<int>(expected.size()); ++step) {
    param.mutable_grad() = gradient(param, step);
    optimizer->step();
    for (std::size_t i = 0; i < kP0.size(); ++i) {
      worst = std::max(worst, std::fabs(param[static_cast<long>(i)].item<double>() - expected[step][i].get<double>()));
    }
  }
  MESSAGE(name << ": largest difference from PyTorch over " << expected.size() << " steps: " << worst);
  CHECK(worst < 1e-12);
}

TEST_CASE("optimizers: SGD (Nesterov), Adam, AdamW and RAdam match PyTorch step by step") {
  train::OptimizerSpec sgd;
  sgd.kind = "sgd";
  sgd.lr = 0.05;
  sgd.momentum = 0.9;
  sgd.nesterov = true;
  sgd.weight_decay = 1e-2;
  check_against_pytorch("sgd", sgd);

  train::OptimizerSpec adam;
  adam.kind = "adam";
  adam.lr = 0.01;
  adam.beta1 = 0.8;
  adam.beta2 = 0.99;
  adam.weight_decay = 1e-2;
  check_against_pytorch("adam", adam);

  train::OptimizerSpec adamw;
  adamw.kind = "adamw";
  adamw.lr = 0.01;
  adamw.weight_decay = 0.05;
  check_against_pytorch("adamw", adamw);

  train::OptimizerSpec radam;
  radam.kind = "radam";
  radam.lr = 0.01;
  radam.weight_decay = 1e-2;
  check_against_pytorch("radam", radam);  // the first 5 steps are un-rectified (rho_t <= 5)

  train::OptimizerSpec radam_short = radam;
  radam_short.beta2 = 0.8;
  radam_short.weight_decay = 0;
  check_against_pytorch("radam_short_memory", radam_short);
}

TEST_CASE("optimizers: layer-wise multipliers, frozen blocks and weight-decay exemptions") {
  models::ModelSpec spec{"resnet18", {}};
  spec.head.num_classes = 3;
  models::Classifier model = models::make_classifier(spec);
  train::OptimizerSpec adam;
  adam.lr = 1e-3;
  adam.weight_decay = 1e-4;
  train::TrainableSpec trainable;
  trainable.first_trained_block = train::block_index(*model, "layer3");
  trainable.lr_multiplier = 0.5;
  train::OptimizerSetup setup = train::make_optimizer(*model, trainable, adam);

  std::map<std::string, double> lr_of;
  for (std::size_t i = 0; i < setup.groups.size(); ++i) {
    const auto& group = setup.groups[i];
    lr_of[group.block] = setup.optimizer->param_groups()[i].options().get_lr();
    const double decay = static_cast<const torch::optim::AdamOptions&>(setup.optimizer->param_groups()[i].options()).weight_decay();
    CHECK(decay == (group.decay ? 1e-4 : 0.0));
  }
  CHECK(lr_of.size() == 3);
  CHECK(lr_of.at("fc") == doctest::Approx(1e-3));
  CHECK(lr_of.at("layer4") == doctest::Approx(5e-4));
  CHECK(lr_of.at("layer3") == doctest::Approx(2.5e-4));
  for (const auto& item : model->named_parameters()) {
    const std::string& name = item.key();
    const torch::Tensor& param = item.value();
    const bool trained = name.rfind("layer3.", 0) == 0 || name.rfind("layer4.", 0) == 0 || name.rfind("fc.", 0) == 0;
    INFO(name);
    CHECK(param.requires_grad() == trained);
  }
  setup.set_learning_rate(2e-3);
  for (std::size_t i = 0; i < setup.groups.size(); ++i) {
    if (setup.groups[i].block == "layer3") CHECK(setup.optimizer->param_groups()[i].options().get_lr() == doctest::Approx(5e-4));
  }

  train::set_train_mode(*model, trainable);
  for (const auto& item : model->named_modules("", false)) {
    if (item.key() == "layer1" || item.key() == "bn1") CHECK_FALSE(item.value()->is_training());
    if (item.key() == "layer4" || item.key() == "fc") CHECK(item.value()->is_training());
  }
  CHECK_THROWS_WITH_AS(train::block_index(*model, "layer9"),
                       "'layer9' is not a block of resnet18 (blocks, input to output: conv1, bn1, layer1, layer2, layer3, "
                       "layer4)",
                       std::invalid_argument);
}

TEST_CASE("optimizers: RAdam state survives save and load") {
  torch::Tensor a = torch::tensor(kP0, torch::kFloat64).requires_grad_(true);
  torch::Tensor b = a.detach().clone().requires_grad_(true);
  train::OptimizerSpec radam;
  radam.kind = "radam";
  std::vector<torch::optim::OptimizerParamGroup> ga, gb;
  ga.emplace_back(std::vector<torch::Tensor>{a});
  gb.emplace_back(std::vector<torch::Tensor>{b});
  auto first = train::make_optimizer_for_groups(radam, std::move(ga), {true});
  auto second = train::make_optimizer_for_groups(radam, std::move(gb), {true});
  for (int step = 0; step < 7; ++step) {
    a.mutable_grad() = gradient(a, step);
    first->step();
  }
  test::TempDir dir;
  torch::serialize::OutputArchive out;
  first->save(out);
  out.save_to((dir / "radam.pt").string());
  torch::serialize::InputArchive in;
  in.load_from((dir / "radam.pt").string());
  second->load(in);
  {
    torch::NoGradGuard no_grad;
    b.copy_(a);
  }
  for (int step = 7; step < 12; ++step) {
    a.mutable_grad() = gradient(a, step);
    b.mutable_grad() = gradient(b, step);
    first->step();
    second->step();
  }
  CHECK(torch::equal(a, b));
}

}  // namespace
}  // namespace petal
