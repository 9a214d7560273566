#pragma once
// Mixed precision on CUDA: the autocast scope of a forward pass (float16 or bfloat16), and dynamic
// loss scaling (float16 only: bfloat16 has float32's exponent range, so small gradients survive).

#include <torch/types.h>

#include <string>
#include <vector>

namespace petal::train {

enum class Precision { Float32, Float16, BFloat16 };

// The train parameter mixed_precision ("false", "true" = "fp16", "fp16", "bf16") on `device`:
// Float32 off CUDA (train_params.cpp rejects it with device = "cpu"; "auto" on a CPU-only machine
// trains in float32).
Precision precision_on(const std::string& mixed_precision, const torch::Device& device);
// "float32", "fp16 autocast with loss scaling", "bf16 autocast": for log lines and training.json.
std::string describe(Precision precision);

// Autocast to `precision` for the forward passes inside the scope (none for Float32); on leaving,
// autocast is off again and its cast cache cleared, so no cast of this step's weights outlives it.
class AutocastScope {
 public:
  explicit AutocastScope(Precision precision);
  ~AutocastScope();
  AutocastScope(const AutocastScope&) = delete;
  AutocastScope& operator=(const AutocastScope&) = delete;

 private:
  bool enabled_;
};

// Dynamic loss scaling, as torch.cuda.amp.GradScaler does it: the loss is multiplied by a large
// scale before backward so small gradients survive float16; before the optimizer step the
// gradients are unscaled, and a step whose gradients hold an inf or NaN is skipped and the scale
// halved. After 2000 good steps in a row the scale doubles.
class LossScaler {
 public:
  // Disabled, it passes the loss through and every step goes ahead.
  explicit LossScaler(bool enabled) : enabled_(enabled) {}
  torch::Tensor scale(const torch::Tensor& loss) const { return enabled_ ? loss * scale_ : loss; }
  // Unscales the gradients of `params` in place; false (and the scale halves) if any is inf/NaN:
  // then skip this step. One fused kernel per device checks and unscales every gradient, so a
  // step waits for the GPU once, not once per parameter.
  bool unscale(const std::vector<torch::Tensor>& params);
  double current_scale() const { return scale_; }

 private:
  bool enabled_;
  double scale_ = 65536;
  int good_steps_ = 0;
};

}  // namespace petal::train
