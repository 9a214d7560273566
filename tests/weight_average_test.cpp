// The exponential moving average of weights (stages/train/weight_average.h): its arithmetic against
// the formula, the swap in and out, and a checkpoint's round trip. Its use in training (validation,
// the best epoch, resume) is in trainer_test.cpp.
#include <doctest/doctest.h>
#include <torch/nn.h>

#include <cmath>

#include "stages/train/weight_average.h"

namespace petal::train {
namespace {

// One Linear(2, 1) and one BatchNorm1d(1): parameters, float buffers and an integer buffer.
struct Tiny : torch::nn::Module {
  Tiny() {
    linear = register_module("linear", torch::nn::Linear(2, 1));
    norm = register_module("norm", torch::nn::BatchNorm1d(1));
  }
  torch::nn::Linear linear{nullptr};
  torch::nn::BatchNorm1d norm{nullptr};
};

void set_all(torch::nn::Module& module, float value) {
  torch::NoGradGuard no_grad;
  for (auto& p : module.parameters()) p.fill_(value);
  for (auto& b : module.buffers()) b.fill_(value);
}

double weight_of(torch::nn::Module& module) { return module.named_parameters()["linear.weight"][0][0].item<double>(); }

TEST_CASE("weight average: follows the warmed-up exponential formula step by step") {
  Tiny model;
  set_all(model, 0);
  WeightAverage average(model, 0.9);
  CHECK(average.decay_at(1) == doctest::Approx(2.0 / 11.0));  // warm-up: (1 + t) / (10 + t)
  CHECK(average.decay_at(1000) == doctest::Approx(0.9));       // then the decay itself
  double expected = 0;
  for (int step = 1; step <= 40; ++step) {
    set_all(model, static_cast<float>(step));  // the "optimizer" moves every weight to `step`
    average.update();
    const double d = average.decay_at(step);
    expected = d * expected + (1 - d) * step;
  }
  CHECK(average.updates() == 40);
  const auto state = average.state();
  for (const auto& [name, tensor] : state) {
    INFO(name);
    if (tensor.is_floating_point()) {
      CHECK(tensor.flatten()[0].item<double>() == doctest::Approx(expected).epsilon(1e-5));
    } else {
      CHECK(tensor.item<std::int64_t>() == 40);  // num_batches_tracked: copied, not averaged
    }
  }
  CHECK(expected < 40 - 1);  // it lags behind the live weights
}

TEST_CASE("weight average: a swap puts the average into the model and gives the live weights back") {
  Tiny model;
  set_all(model, 1);
  WeightAverage average(model, 0.5);
  set_all(model, 3);
  {
    const WeightAverage::Swap swapped(&average);
    CHECK(weight_of(model) == doctest::Approx(1.0));  // no update yet: still the starting weights
  }
  CHECK(weight_of(model) == doctest::Approx(3.0));
  average.update();  // d_1 = min(0.5, 2 / 11): mostly the live weights
  {
    const WeightAverage::Swap swapped(&average);
    CHECK(weight_of(model) == doctest::Approx(2.0 / 11.0 * 1 + 9.0 / 11.0 * 3));
  }
  CHECK(weight_of(model) == doctest::Approx(3.0));
  const WeightAverage::Swap none(nullptr);  // no average: nothing happens
  CHECK(weight_of(model) == doctest::Approx(3.0));
}

TEST_CASE("weight average: a restored average continues exactly where the saved one stood") {
  Tiny model;
  set_all(model, 0);
  WeightAverage first(model, 0.95);
  for (int step = 1; step <= 5; ++step) {
    set_all(model, static_cast<float>(step));
    first.update();
  }
  const weights::StateDict saved = first.state();
  Tiny other;
  set_all(other, 5);
  WeightAverage resumed(other, 0.95);
  resumed.restore(saved, first.updates());
  for (int step = 6; step <= 9; ++step) {
    set_all(model, static_cast<float>(step));
    set_all(other, static_cast<float>(step));
    first.update();
    resumed.update();
  }
  const auto a = first.state(), b = resumed.state();
  REQUIRE(a.size() == b.size());
  for (std::size_t i = 0; i < a.size(); ++i) CHECK(torch::equal(a[i].second, b[i].second));

  weights::StateDict wrong = saved;
  wrong.pop_back();
  CHECK_THROWS_WITH_AS(resumed.restore(wrong, 5), doctest::Contains("resume folder"), std::runtime_error);
  CHECK_THROWS_AS(WeightAverage(model, 1.0), std::invalid_argument);
}

}  // namespace
}  // namespace petal::train
