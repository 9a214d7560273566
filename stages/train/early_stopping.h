#pragma once
// Early stopping on a monitored validation metric (Keras/Lightning semantics). Its state is plain
// data so an epoch checkpoint can save and restore it exactly.
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

namespace petal::train {

struct EarlyStoppingSpec {
  std::string metric = "val_loss";
  bool maximize = false;         // "max" mode (accuracy, F1); "min" for losses
  std::int64_t patience = 0;     // epochs without improvement before stopping; 0 = never stop
  double min_delta = 0;          // an improvement must beat the best by more than this
};

class EarlyStopping {
 public:
  explicit EarlyStopping(EarlyStoppingSpec spec) : spec_(std::move(spec)) {}

  // Records epoch `epoch`'s value; returns true if it is the best so far (its weights should be kept).
  bool observe(std::int64_t epoch, double value);
  bool should_stop() const { return spec_.patience > 0 && epochs_without_improvement_ >= spec_.patience; }
  bool has_best() const { return best_epoch_ >= 0; }
  double best_value() const { return best_; }
  std::int64_t best_epoch() const { return best_epoch_; }
  const EarlyStoppingSpec& spec() const { return spec_; }

  nlohmann::json state() const;
  void restore(const nlohmann::json& state);

 private:
  EarlyStoppingSpec spec_;
  double best_ = 0;
  std::int64_t best_epoch_ = -1;
  std::int64_t epochs_without_improvement_ = 0;
};

}  // namespace petal::train
