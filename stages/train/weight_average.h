#pragma once
// An exponential moving average of a model's weights (Polyak averaging, as TensorFlow's
// ExponentialMovingAverage with num_updates and timm's ModelEma). After optimizer step t (1-based)
//   average = d_t * average + (1 - d_t) * weights,   d_t = min(decay, (1 + t) / (10 + t)),
// so early steps, whose weights are far from the final ones, do not dominate a short run. It covers
// every parameter and floating-point buffer (BatchNorm's running statistics); integer buffers
// (num_batches_tracked) are copied. The average lives beside the model, on its device.
#include <torch/nn/module.h>

#include <cstdint>
#include <vector>

#include "stages/train/weights/state_dict_file.h"

namespace petal::train {

class WeightAverage {
 public:
  // Starts the average at `model`'s current weights. decay in (0, 1).
  WeightAverage(torch::nn::Module& model, double decay);

  void update();                      // after every optimizer step
  std::int64_t updates() const { return updates_; }
  double decay_at(std::int64_t update) const;  // d_t above

  // CPU copies of the averaged tensors under the model's state-dict names (checkpoints, best epoch).
  weights::StateDict state() const;
  // Continues from a checkpoint's state() after `updates` steps (a resumed run).
  void restore(const weights::StateDict& saved, std::int64_t updates);

  // While alive, the model holds the averaged weights; its own come back on destruction.
  class Swap {
   public:
    explicit Swap(WeightAverage* average);  // null: no swap
    ~Swap();
    Swap(const Swap&) = delete;
    Swap& operator=(const Swap&) = delete;

   private:
    WeightAverage* average_;
    std::vector<torch::Tensor> saved_;
  };

 private:
  struct Entry {
    std::string name;
    torch::Tensor live;     // the model's tensor (shares its storage)
    torch::Tensor average;  // same shape, dtype and device
  };
  double decay_;
  std::int64_t updates_ = 0;
  std::vector<Entry> entries_;
};

}  // namespace petal::train
