#include "stages/train/distributed/data_parallel.h"

#include <torch/torch.h>

namespace petal::train {

namespace {

// One contiguous float buffer for many tensors, so a step costs one collective, not one per tensor.
at::Tensor flatten(const std::vector<at::Tensor>& tensors) {
  std::vector<at::Tensor> flat;
  flat.reserve(tensors.size());
  for (const auto& t : tensors) flat.push_back(t.reshape({-1}).to(torch::kFloat32));
  return torch::cat(flat);
}

void unflatten_into(const at::Tensor& flat, const std::vector<at::Tensor>& tensors) {
  torch::NoGradGuard no_grad;
  std::int64_t offset = 0;
  for (const auto& t : tensors) {
    const std::int64_t n = t.numel();
    t.copy_(flat.slice(0, offset, offset + n).view_as(t));
    offset += n;
  }
}

}  // namespace

void all_reduce_gradients(const std::vector<at::Tensor>& parameters, double share, Collective& collective) {
  std::vector<at::Tensor> grads;
  grads.reserve(parameters.size());
  for (const auto& p : parameters) {
    if (!p.grad().defined()) const_cast<at::Tensor&>(p).mutable_grad() = torch::zeros_like(p);
    grads.push_back(p.grad());
  }
  if (grads.empty()) return;
  at::Tensor flat = flatten(grads).mul_(share);
  collective.all_reduce_sum(flat);
  unflatten_into(flat, grads);
}

void broadcast_module_state(torch::nn::Module& module, Collective& collective) {
  std::vector<at::Tensor> tensors;
  for (const auto& p : module.parameters()) tensors.push_back(p);
  for (const auto& b : module.buffers()) {
    if (b.is_floating_point()) tensors.push_back(b);
  }
  if (tensors.empty()) return;
  at::Tensor flat = flatten(tensors);
  collective.broadcast(flat, 0);
  unflatten_into(flat, tensors);
}

void average_buffers(torch::nn::Module& module, Collective& collective) {
  std::vector<at::Tensor> buffers;
  for (const auto& b : module.buffers()) {
    if (b.is_floating_point()) buffers.push_back(b);
  }
  if (buffers.empty()) return;
  at::Tensor flat = flatten(buffers).div_(collective.world_size());
  collective.all_reduce_sum(flat);
  unflatten_into(flat, buffers);
}

std::vector<double> sum_over_ranks(const std::vector<double>& values, Collective& collective) {
  if (values.empty()) return values;
  // NCCL reduces device memory only.
  const torch::Device device = collective.backend() == "nccl" ? torch::Device(torch::kCUDA) : torch::Device(torch::kCPU);
  at::Tensor t = torch::tensor(values, torch::kFloat64).to(device);
  collective.all_reduce_sum(t);
  t = t.cpu();
  return std::vector<double>(t.data_ptr<double>(), t.data_ptr<double>() + t.numel());
}

}  // namespace petal::train
