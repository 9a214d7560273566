#include "stages/train/mixed_precision.h"

#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>
#include <torch/version.h>

namespace petal::train {

namespace {
// LibTorch 2.3 and later name the device; 1.13 has one setter per device kind.
void set_cuda_autocast_dtype(at::ScalarType dtype) {
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 3)
  at::autocast::set_autocast_dtype(at::kCUDA, dtype);
#else
  at::autocast::set_autocast_gpu_dtype(dtype);
#endif
}
}  // namespace

Precision precision_on(const std::string& mixed_precision, const torch::Device& device) {
  if (!device.is_cuda() || mixed_precision == "false") return Precision::Float32;
  return mixed_precision == "bf16" ? Precision::BFloat16 : Precision::Float16;
}

std::string describe(Precision precision) {
  switch (precision) {
    case Precision::Float16: return "fp16 autocast with loss scaling";
    case Precision::BFloat16: return "bf16 autocast";
    case Precision::Float32: break;
  }
  return "float32";
}

AutocastScope::AutocastScope(Precision precision) : enabled_(precision != Precision::Float32) {
  if (!enabled_) return;
  set_cuda_autocast_dtype(precision == Precision::BFloat16 ? at::kBFloat16 : at::kHalf);
  at::autocast::set_enabled(true);
}

AutocastScope::~AutocastScope() {
  if (!enabled_) return;
  at::autocast::set_enabled(false);
  at::autocast::clear_cache();
}

bool LossScaler::unscale(const std::vector<torch::Tensor>& params) {
  if (!enabled_) return true;
  std::vector<torch::Tensor> grads;
  for (const auto& p : params) {
    if (p.grad().defined()) grads.push_back(p.grad());
  }
  if (grads.empty()) return true;
  const auto on_device = torch::TensorOptions().dtype(torch::kFloat32).device(grads.front().device());
  torch::Tensor found_inf = torch::zeros({1}, on_device);
  at::_amp_foreach_non_finite_check_and_unscale_(grads, found_inf, torch::full({1}, 1.0 / scale_, on_device));
  if (found_inf.item<float>() != 0) {
    scale_ /= 2;
    good_steps_ = 0;
    return false;
  }
  if (++good_steps_ == 2000) {
    scale_ *= 2;
    good_steps_ = 0;
  }
  return true;
}

}  // namespace petal::train
