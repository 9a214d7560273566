#pragma once
// Early stopping of poor trials: asynchronous successive halving (ASHA, Li et al. 2018, as Ray
// Tune's ASHAScheduler applies it to stopping). Rungs sit at grace, grace·η, grace·η², ... epochs
// of the monitored stage. When a trial completes a rung's epoch, its validation metric is recorded
// there and compared with every value recorded at that rung so far (its own included): below the
// (1 − 1/η) quantile (above the 1/η quantile when lower is better) it is stopped. Trials are never
// made to wait for others, so a sweep keeps every slot busy.
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace petal {

struct PruningConfig {
  bool enabled = false;
  std::string stage = "train";            // the training stage whose epochs are watched
  std::string metric = "val_accuracy";    // a per-epoch value the stage reports
  bool maximize = true;
  int grace_epochs = 1;                   // the first rung; nothing is stopped before it
  int reduction_factor = 3;               // η: about 1/η of the trials pass each rung
};

class SuccessiveHalving {
 public:
  explicit SuccessiveHalving(PruningConfig config) : config_(std::move(config)) {}

  // The trial's history so far, (epoch, value) in epoch order. Records the values at rungs not yet
  // recorded for it and returns why it should stop ("" to go on). Thread-safe; calling again with
  // the same or a longer history is harmless.
  std::string observe(const std::string& trial, const std::vector<std::pair<int, double>>& history);

  std::vector<int> rungs_up_to(int epoch) const;
  const PruningConfig& config() const { return config_; }

 private:
  PruningConfig config_;
  std::mutex mutex_;
  std::map<int, std::map<std::string, double>> recorded_;  // rung epoch -> trial -> value
};

// What the rungs are fed. The (epoch, metric) history in the newest epoch checkpoint under
// `resume_dir` (a training stage's StageContext::resume_dir; stages/train/checkpoint.h); empty when
// there is none yet or it vanished while being read.
std::vector<std::pair<int, double>> checkpoint_history(const std::filesystem::path& resume_dir, const std::string& metric);
// The same from a trial's recorded curves (SweepState: [{"stage", "name", "points"}]).
std::vector<std::pair<int, double>> curve_history(const nlohmann::json& curves, const std::string& stage,
                                                  const std::string& metric);

// Linear-interpolated quantile (q in [0, 1]) of non-empty `values`, as numpy.percentile does.
double quantile(std::vector<double> values, double q);

}  // namespace petal
