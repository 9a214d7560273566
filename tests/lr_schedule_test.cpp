// Learning-rate schedules against PyTorch's schedulers (tests/parity/lr_schedules.py), and early stopping.
#include <doctest/doctest.h>

#include <cmath>
#include <optional>
#include <nlohmann/json.hpp>

#include "stages/train/early_stopping.h"
#include "stages/train/lr_schedule.h"
#include "tests/support/python_reference.h"
#include "tests/support/test_support.h"

namespace petal {
namespace {

using train::ScheduleSpec;

nlohmann::json pytorch_rates() {
  static const nlohmann::json rates = [] {
    test::TempDir dir;
    test::run_python_reference("lr_schedules.py", {(dir / "rates.json").string()});
    return nlohmann::json::parse(test::read_file(dir / "rates.json"));
  }();
  return rates;
}

void check_matches(const ScheduleSpec& spec, const std::string& name) {
  const auto expected = pytorch_rates().at(name);
  REQUIRE(expected.size() == 42);
  for (std::size_t i = 0; i < expected.size(); ++i) {
    const double want = expected[i].get<double>();
    const double got = train::learning_rate(spec, static_cast<std::int64_t>(i));
    INFO(name << " iteration " << i << ": petal " << got << ", PyTorch " << want);
    CHECK(std::fabs(got - want) <= 1e-9 + 1e-6 * std::fabs(want));
  }
}

void check_momentum_matches(const ScheduleSpec& spec, const std::string& name) {
  const auto expected = pytorch_rates().at(name);
  REQUIRE(expected.size() == 42);
  for (std::size_t i = 0; i < expected.size(); ++i) {
    const double want = expected[i].get<double>();
    const std::optional<double> got = train::scheduled_momentum(spec, static_cast<std::int64_t>(i));
    REQUIRE(got.has_value());
    INFO(name << " iteration " << i << ": petal " << *got << ", PyTorch " << want);
    CHECK(std::fabs(*got - want) <= 1e-9);
  }
}

ScheduleSpec base(const std::string& kind) {
  ScheduleSpec spec;
  spec.kind = kind;
  spec.iterations_per_epoch = 7;
  spec.epochs = 6;
  return spec;
}

TEST_CASE("lr schedule: step, cosine and one-cycle match PyTorch") {
  ScheduleSpec step = base("step");
  step.lr = 0.1;
  step.step_epochs = 2;
  step.gamma = 0.5;
  check_matches(step, "step");

  ScheduleSpec cosine = base("cosine");
  cosine.lr = 0.1;
  cosine.min_lr = 1e-4;
  check_matches(cosine, "cosine");

  ScheduleSpec one_cycle = base("one_cycle");
  one_cycle.lr = 0.1;
  one_cycle.max_lr = 0.1;
  check_matches(one_cycle, "one_cycle");

  one_cycle.pct_start = 0.15;  // the reference recipe's warm-up share (train.pct_start)
  check_matches(one_cycle, "one_cycle_15");
}

TEST_CASE("lr schedule: one-cycle moves the momentum / beta1 against the rate as PyTorch's OneCycleLR") {
  ScheduleSpec one_cycle = base("one_cycle");
  one_cycle.lr = 0.1;
  one_cycle.max_lr = 0.1;
  one_cycle.pct_start = 0.15;
  CHECK_FALSE(train::scheduled_momentum(one_cycle, 0).has_value());  // off unless asked
  one_cycle.cycle_momentum = true;
  check_momentum_matches(one_cycle, "one_cycle_momentum");
  one_cycle.pct_start = 0.3;
  one_cycle.base_momentum = 0.8;
  one_cycle.max_momentum = 0.9;
  check_momentum_matches(one_cycle, "one_cycle_beta1");
  // The rate itself does not depend on it.
  ScheduleSpec plain = one_cycle;
  plain.cycle_momentum = false;
  for (std::int64_t i = 0; i < 42; ++i) CHECK(train::learning_rate(one_cycle, i) == train::learning_rate(plain, i));

  ScheduleSpec cosine = base("cosine");
  cosine.cycle_momentum = true;
  CHECK_FALSE(train::scheduled_momentum(cosine, 3).has_value());  // only one_cycle cycles it

  one_cycle.base_momentum = 0.95;
  one_cycle.max_momentum = 0.9;
  CHECK(train::schedule_problem(one_cycle) == "base_momentum must not exceed max_momentum for the one_cycle schedule");
}

TEST_CASE("lr schedule: cyclical triangular, triangular2 and exp_range match PyTorch's CyclicLR") {
  ScheduleSpec triangular = base("cyclic");
  triangular.lr = 3e-4;
  triangular.min_lr = 5e-8;
  triangular.max_lr = 3e-3;
  triangular.cyclic_step_size = 5;
  check_matches(triangular, "triangular");

  ScheduleSpec halving = base("cyclic");
  halving.min_lr = 1e-4;
  halving.max_lr = 1e-2;
  halving.cyclic_step_size = 4;
  halving.cyclic_mode = "triangular2";
  check_matches(halving, "triangular2");

  ScheduleSpec decaying = halving;
  decaying.cyclic_mode = "exp_range";
  decaying.gamma = 0.97;
  check_matches(decaying, "exp_range");
}

TEST_CASE("lr schedule: warm-up rises linearly to the schedule and bad specs are explained") {
  ScheduleSpec spec = base("cosine");
  spec.lr = 0.1;
  spec.warmup_epochs = 1;
  CHECK(train::learning_rate(spec, 0) == doctest::Approx(0.001));
  CHECK(train::learning_rate(spec, 7) == doctest::Approx(0.1));
  CHECK(train::learning_rate(spec, 3) > train::learning_rate(spec, 2));
  CHECK(train::learning_rate(spec, 41) < 0.01);

  ScheduleSpec cyclic = base("cyclic");
  cyclic.min_lr = 1e-2;
  cyclic.max_lr = 1e-3;
  CHECK(train::schedule_problem(cyclic) == "max_lr must be greater than min_lr for the cyclic schedule");
  spec.warmup_epochs = 6;
  CHECK(train::schedule_problem(spec) == "warmup_epochs must be smaller than epochs");
}

TEST_CASE("early stopping: patience, min_delta, mode and a restored state") {
  train::EarlyStopping losses({"val_loss", false, 2, 0.01});
  CHECK(losses.observe(1, 1.0));
  CHECK(losses.observe(2, 0.95));
  CHECK_FALSE(losses.observe(3, 0.945));  // better, but not by more than min_delta
  CHECK_FALSE(losses.should_stop());
  const nlohmann::json saved = losses.state();
  CHECK_FALSE(losses.observe(4, 0.96));
  CHECK(losses.should_stop());
  CHECK(losses.best_epoch() == 2);

  train::EarlyStopping resumed({"val_loss", false, 2, 0.01});
  resumed.restore(saved);
  CHECK_FALSE(resumed.should_stop());
  CHECK_FALSE(resumed.observe(4, 0.96));
  CHECK(resumed.should_stop());

  train::EarlyStopping accuracy({"val_accuracy", true, 0, 0});
  CHECK(accuracy.observe(1, 0.5));
  CHECK_FALSE(accuracy.observe(2, std::nan("")));
  CHECK(accuracy.observe(3, 0.6));
  for (int epoch = 4; epoch < 50; ++epoch) accuracy.observe(epoch, 0.1);
  CHECK_FALSE(accuracy.should_stop());  // patience 0: never stops
}

}  // namespace
}  // namespace petal
