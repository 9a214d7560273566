#include "stages/train/weight_average.h"

#include <algorithm>
#include <stdexcept>
#include <unordered_map>

namespace petal::train {

WeightAverage::WeightAverage(torch::nn::Module& model, double decay) : decay_(decay) {
  if (!(decay > 0 && decay < 1)) throw std::invalid_argument("the weight average's decay must be in (0, 1)");
  torch::NoGradGuard no_grad;
  for (const auto& item : model.named_parameters()) {
    entries_.push_back({item.key(), item.value(), item.value().detach().clone()});
  }
  for (const auto& item : model.named_buffers()) {
    entries_.push_back({item.key(), item.value(), item.value().detach().clone()});
  }
}

double WeightAverage::decay_at(std::int64_t update) const {
  const double t = static_cast<double>(update);
  return std::min(decay_, (1 + t) / (10 + t));
}

void WeightAverage::update() {
  torch::NoGradGuard no_grad;
  ++updates_;
  const double keep = decay_at(updates_);
  for (Entry& entry : entries_) {
    if (entry.average.is_floating_point()) {
      entry.average.lerp_(entry.live.detach(), 1.0 - keep);  // average + (1 - d)(live - average)
    } else {
      entry.average.copy_(entry.live);
    }
  }
}

weights::StateDict WeightAverage::state() const {
  weights::StateDict state;
  for (const Entry& entry : entries_) state.emplace_back(entry.name, entry.average.to(torch::kCPU, false, true));
  return state;
}

void WeightAverage::restore(const weights::StateDict& saved, std::int64_t updates) {
  std::unordered_map<std::string, const torch::Tensor*> by_name;
  for (const auto& [name, tensor] : saved) by_name[name] = &tensor;
  torch::NoGradGuard no_grad;
  for (Entry& entry : entries_) {
    const auto found = by_name.find(entry.name);
    if (found == by_name.end() || !found->second->sizes().equals(entry.average.sizes())) {
      throw std::runtime_error("the checkpoint's weight average has no tensor '" + entry.name +
                               "' of the model's shape; delete the stage's resume folder to start again");
    }
    entry.average.copy_(*found->second);
  }
  updates_ = updates;
}

WeightAverage::Swap::Swap(WeightAverage* average) : average_(average) {
  if (!average_) return;
  torch::NoGradGuard no_grad;
  for (Entry& entry : average_->entries_) {
    saved_.push_back(entry.live.detach().clone());
    entry.live.detach().copy_(entry.average);
  }
}

WeightAverage::Swap::~Swap() {
  if (!average_) return;
  torch::NoGradGuard no_grad;
  for (std::size_t i = 0; i < saved_.size(); ++i) average_->entries_[i].live.detach().copy_(saved_[i]);
}

}  // namespace petal::train
