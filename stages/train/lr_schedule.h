#pragma once
// Learning-rate schedules, evaluated per optimizer step (iteration). Pure arithmetic, no LibTorch,
// so the core tests check them against PyTorch's formulas cheaply. Layer-wise multipliers are
// applied on top by the optimizer's parameter groups.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace petal::train {

struct ScheduleSpec {
  std::string kind = "constant";   // constant | step | cosine | one_cycle | cyclic
  double lr = 1e-3;                // the base rate (constant, step, cosine's peak)
  double min_lr = 0;               // cosine's floor; cyclic's base_lr
  double max_lr = 0;               // one_cycle's and cyclic's peak (0: 10 x lr)
  std::int64_t iterations_per_epoch = 1;
  std::int64_t epochs = 1;
  double warmup_epochs = 0;        // linear warm-up from lr/100 (step, cosine)
  std::int64_t step_epochs = 10;   // step: multiply by gamma every step_epochs
  double gamma = 0.1;              // step's factor; cyclic exp_range's per-iteration decay
  std::string cyclic_mode = "triangular";  // triangular | triangular2 | exp_range
  std::int64_t cyclic_step_size = 0;       // iterations per half cycle; 0: 2 epochs
  double pct_start = 0.3;          // one_cycle: share of the steps spent increasing
  double div_factor = 25;          // one_cycle: initial lr = max_lr / div_factor
  double final_div_factor = 1e4;   // one_cycle: final lr = initial lr / final_div_factor
  // one_cycle: the momentum (SGD) or beta1 (Adam family) moves against the rate, from
  // max_momentum down to base_momentum while it rises and back while it falls (PyTorch's
  // OneCycleLR with cycle_momentum = True, its default).
  bool cycle_momentum = false;
  double base_momentum = 0.85, max_momentum = 0.95;
};

// The learning rate at optimizer step `iteration` (0-based, counted over the whole run).
//   step:      lr * gamma^floor(epoch / step_epochs)              (PyTorch StepLR, stepped per epoch)
//   cosine:    min_lr + (lr - min_lr)(1 + cos(pi t / T)) / 2       (CosineAnnealingLR per iteration)
//   one_cycle: PyTorch OneCycleLR with cosine annealing, three_phase = false
//   cyclic:    PyTorch CyclicLR (Smith 2017): triangular, triangular2 (amplitude halves each
//              cycle), exp_range (amplitude x gamma^iteration)
// Warm-up (step, cosine) rises linearly from lr/100 to the schedule's value over warmup_epochs.
double learning_rate(const ScheduleSpec& spec, std::int64_t iteration);

// The momentum (or beta1) at optimizer step `iteration` when the schedule cycles it (one_cycle
// with cycle_momentum), else nullopt: the optimizer keeps its own.
std::optional<double> scheduled_momentum(const ScheduleSpec& spec, std::int64_t iteration);

// "" if the spec is consistent, else what is wrong, phrased for the user ("max_lr must be ...").
std::string schedule_problem(const ScheduleSpec& spec);

}  // namespace petal::train
