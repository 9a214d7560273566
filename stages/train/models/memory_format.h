#pragma once
// Memory format of a network's parameters.

#include <algorithm>
#include <array>
#include <string>
#include <string_view>

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

// What `channels_last = "auto"` picks: channels-last for CPU training of the architectures where
// it measured faster, and never on CUDA (channels-last there is for mixed precision, and opt-in).
// On the CPU (LibTorch 1.13 with oneDNN, 2 threads, batch 32, 128 px; `petal_bench_train --mode
// compute --channels-last 0|1`, img/s): depthwise convolutions run 2-3x faster in NHWC, so
// mobilenet_v2 70.5 -> 101, efficientnet_lite0 48.7 -> 70.4, efficientnet_b0 44.7 -> 59.0; also
// densenet121 17.7 -> 19.1 and resnet50 14.9 -> 15.5. The rest gain nothing or lose: resnet18 38.4 ->
// 38.9, convnext_tiny 9.1 -> 8.9, small_cnn 24.5 -> 23.4, vgg16_bn 4.7 -> 3.8. Measured later the
// same way (lite0 45.9 -> 66.2 in that session): efficientnet_lite1 33.8 -> 51.9, lite2 32.8 -> 53.6.
inline bool channels_last_by_default(std::string_view architecture, bool cuda) {
  static constexpr std::array<std::string_view, 7> faster_on_cpu = {
      "mobilenet_v2", "efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2",
      "efficientnet_b0", "densenet121", "resnet50"};
  return !cuda && std::find(faster_on_cpu.begin(), faster_on_cpu.end(), architecture) != faster_on_cpu.end();
}

// `setting` is the train/finetune parameter: "auto", "true" or "false".
inline bool use_channels_last_for(const std::string& setting, std::string_view architecture, bool cuda) {
  if (setting == "auto") return channels_last_by_default(architecture, cuda);
  return setting == "true";
}

}  // namespace petal::models
