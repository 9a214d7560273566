#pragma once
// Memory format of a network's parameters.

#include <torch/nn/module.h>
#include <torch/types.h>

namespace petal::models {

// Stores every 4-D parameter (convolution weights) in channels-last (NHWC) order, in place; the
// logical shapes stay NCHW. With channels-last inputs, convolutions then skip layout conversions
// (faster on recent GPUs).
inline void use_channels_last(torch::nn::Module& module) {
  torch::NoGradGuard no_grad;
  for (auto& param : module.parameters()) {
    if (param.dim() == 4) param.set_data(param.data().contiguous(torch::MemoryFormat::ChannelsLast));
  }
}

}  // namespace petal::models
