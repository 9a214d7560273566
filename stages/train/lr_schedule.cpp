#include "stages/train/lr_schedule.h"

#include <algorithm>
#include <cmath>

namespace petal::train {

namespace {

constexpr double kPi = 3.14159265358979323846;

double peak(const ScheduleSpec& spec) { return spec.max_lr > 0 ? spec.max_lr : 10 * spec.lr; }

double cosine_between(double from, double to, double fraction) {
  return to + (from - to) * (1 + std::cos(kPi * fraction)) / 2;
}

// Where one_cycle is at `iteration`: in the rising phase or not, and the fraction of that phase done.
struct CyclePosition {
  bool rising;
  double fraction;
};

CyclePosition one_cycle_position(const ScheduleSpec& spec, std::int64_t iteration) {
  const double total = static_cast<double>(spec.epochs * spec.iterations_per_epoch);
  // PyTorch's phase ends: pct_start * total - 1 and total - 1.
  const double up_end = spec.pct_start * total - 1;
  const double down_end = total - 1;
  const double step = static_cast<double>(std::min<std::int64_t>(iteration, static_cast<std::int64_t>(down_end)));
  if (step <= up_end) return {true, up_end > 0 ? step / up_end : 1.0};
  return {false, (step - up_end) / std::max(1e-12, down_end - up_end)};
}

double one_cycle(const ScheduleSpec& spec, std::int64_t iteration) {
  const double max_lr = peak(spec);
  const double initial = max_lr / spec.div_factor;
  const double final_lr = initial / spec.final_div_factor;
  const CyclePosition at = one_cycle_position(spec, iteration);
  return at.rising ? cosine_between(initial, max_lr, at.fraction) : cosine_between(max_lr, final_lr, at.fraction);
}

double cyclic(const ScheduleSpec& spec, std::int64_t iteration) {
  const std::int64_t step_size = spec.cyclic_step_size > 0 ? spec.cyclic_step_size : 2 * spec.iterations_per_epoch;
  const double cycle = std::floor(1 + static_cast<double>(iteration) / (2.0 * static_cast<double>(step_size)));
  const double x = 1 + static_cast<double>(iteration) / static_cast<double>(step_size) - 2 * cycle;  // in [-1, 1)
  const double height = (peak(spec) - spec.min_lr) * std::max(0.0, 1 - std::fabs(x));
  if (spec.cyclic_mode == "triangular2") return spec.min_lr + height / std::pow(2.0, cycle - 1);
  if (spec.cyclic_mode == "exp_range") return spec.min_lr + height * std::pow(spec.gamma, static_cast<double>(iteration));
  return spec.min_lr + height;
}

}  // namespace

double learning_rate(const ScheduleSpec& spec, std::int64_t iteration) {
  const double per_epoch = static_cast<double>(std::max<std::int64_t>(1, spec.iterations_per_epoch));
  const double epoch = static_cast<double>(iteration) / per_epoch;
  if (spec.kind == "one_cycle") return one_cycle(spec, iteration);
  if (spec.kind == "cyclic") return cyclic(spec, iteration);

  double rate = spec.lr;
  if (spec.kind == "step") {
    rate = spec.lr * std::pow(spec.gamma, std::floor(epoch / static_cast<double>(std::max<std::int64_t>(1, spec.step_epochs))));
  } else if (spec.kind == "cosine") {
    const double warmup_iterations = spec.warmup_epochs * per_epoch;
    const double total = static_cast<double>(spec.epochs) * per_epoch - warmup_iterations;
    const double t = std::max(0.0, static_cast<double>(iteration) - warmup_iterations);
    rate = cosine_between(spec.lr, spec.min_lr, total > 0 ? std::min(1.0, t / total) : 1.0);
  }
  if (spec.warmup_epochs > 0 && epoch < spec.warmup_epochs && (spec.kind == "step" || spec.kind == "cosine")) {
    const double start = spec.lr / 100;
    return start + (rate - start) * (static_cast<double>(iteration) / (spec.warmup_epochs * per_epoch));
  }
  return rate;
}

std::optional<double> scheduled_momentum(const ScheduleSpec& spec, std::int64_t iteration) {
  if (spec.kind != "one_cycle" || !spec.cycle_momentum) return std::nullopt;
  const CyclePosition at = one_cycle_position(spec, iteration);
  return at.rising ? cosine_between(spec.max_momentum, spec.base_momentum, at.fraction)
                   : cosine_between(spec.base_momentum, spec.max_momentum, at.fraction);
}

std::string schedule_problem(const ScheduleSpec& spec) {
  if (spec.kind == "cyclic") {
    if (peak(spec) <= spec.min_lr) return "max_lr must be greater than min_lr for the cyclic schedule";
    if (spec.cyclic_mode == "exp_range" && (spec.gamma <= 0 || spec.gamma > 1)) {
      return "gamma must be in (0, 1] for cyclic_mode = \"exp_range\"";
    }
  }
  if (spec.kind == "one_cycle") {
    if (spec.pct_start <= 0 || spec.pct_start >= 1) return "pct_start must be between 0 and 1 (exclusive)";
    if (spec.max_lr > 0 && spec.max_lr < spec.lr) return "max_lr must be at least lr for the one_cycle schedule";
    if (spec.cycle_momentum && spec.base_momentum > spec.max_momentum) {
      return "base_momentum must not exceed max_momentum for the one_cycle schedule";
    }
  }
  if (spec.kind == "cosine" && spec.min_lr > spec.lr) return "min_lr must not exceed lr for the cosine schedule";
  if (spec.warmup_epochs >= static_cast<double>(spec.epochs) && spec.warmup_epochs > 0) {
    return "warmup_epochs must be smaller than epochs";
  }
  return "";
}

}  // namespace petal::train
