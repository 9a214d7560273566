#pragma once
// Classification metrics from a confusion matrix. No LibTorch: the trainer and the evaluate stage
// feed it predicted and true class indices.
#include <cstdint>
#include <vector>

namespace petal::train {

class ConfusionMatrix {
 public:
  explicit ConfusionMatrix(std::int64_t classes);

  void add(std::int64_t truth, std::int64_t predicted);  // throws std::out_of_range for a bad index
  void add(std::int64_t truth, std::int64_t predicted, std::int64_t samples);  // e.g. merging another matrix
  std::int64_t classes() const { return classes_; }
  std::int64_t count(std::int64_t truth, std::int64_t predicted) const { return counts_[truth * classes_ + predicted]; }
  std::int64_t total() const { return total_; }

  double accuracy() const;                     // 0 when empty
  double precision(std::int64_t cls) const;    // 0 when nothing was predicted as cls
  double recall(std::int64_t cls) const;       // 0 when cls has no samples
  double f1(std::int64_t cls) const;           // 0 when precision + recall is 0
  std::int64_t support(std::int64_t cls) const;
  // Macro-F1 averages over classes that have samples or predictions (scikit-learn averages over
  // all labels it sees; classes absent from both sides would only add zeros).
  double macro_f1() const;
  double weighted_f1() const;                  // weighted by support

 private:
  std::int64_t classes_;
  std::int64_t total_ = 0;
  std::vector<std::int64_t> counts_;  // row = truth, column = prediction
};

}  // namespace petal::train
