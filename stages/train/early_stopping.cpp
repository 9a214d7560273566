#include "stages/train/early_stopping.h"

#include <cmath>

namespace petal::train {

bool EarlyStopping::observe(std::int64_t epoch, double value) {
  // A NaN never improves (a diverged epoch must not become "best").
  const bool improved = !std::isnan(value) && (best_epoch_ < 0 || (spec_.maximize ? value > best_ + spec_.min_delta
                                                                                  : value < best_ - spec_.min_delta));
  if (improved) {
    best_ = value;
    best_epoch_ = epoch;
    epochs_without_improvement_ = 0;
  } else {
    ++epochs_without_improvement_;
  }
  return improved;
}

nlohmann::json EarlyStopping::state() const {
  return {{"best", best_}, {"best_epoch", best_epoch_}, {"epochs_without_improvement", epochs_without_improvement_}};
}

void EarlyStopping::restore(const nlohmann::json& state) {
  best_ = state.at("best").get<double>();
  best_epoch_ = state.at("best_epoch").get<std::int64_t>();
  epochs_without_improvement_ = state.at("epochs_without_improvement").get<std::int64_t>();
}

}  // namespace petal::train
