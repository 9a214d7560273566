#include "stages/train/mixed_precision.h"

#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>
#include <torch/version.h>

namespace petal::train {

namespace {
// LibTorch 2.4 and later name the device (their old CUDA-only calls warn on every use); 1.13 has
// calls per kind of device.
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
void set_cuda_autocast(bool enabled, at::ScalarType dtype) {
  at::autocast::set_autocast_dtype(at::kCUDA, dtype);
  at::autocast::set_autocast_enabled(at::kCUDA, enabled);
}
#else
void set_cuda_autocast(bool enabled, at::ScalarType dtype) {
  at::autocast::set_autocast_gpu_dtype(dtype);
  at::autocast::set_enabled(enabled);
}
#endif
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
  if (enabled_) set_cuda_autocast(true, precision == Precision::BFloat16 ? at::kBFloat16 : at::kHalf);
}

// Back to autocast off with LibTorch's default dtype (float16), as before the scope.
AutocastScope::~AutocastScope() {
  if (!enabled_) return;
  set_cuda_autocast(false, at::kHalf);
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
