#include "stages/train/classification_metrics.h"

#include <stdexcept>
#include <string>

namespace petal::train {

ConfusionMatrix::ConfusionMatrix(std::int64_t classes) : classes_(classes), counts_(classes * classes, 0) {
  if (classes < 1) throw std::invalid_argument("a confusion matrix needs at least one class");
}

void ConfusionMatrix::add(std::int64_t truth, std::int64_t predicted) { add(truth, predicted, 1); }

void ConfusionMatrix::add(std::int64_t truth, std::int64_t predicted, std::int64_t samples) {
  if (truth < 0 || truth >= classes_ || predicted < 0 || predicted >= classes_) {
    throw std::out_of_range("class index out of range: truth " + std::to_string(truth) + ", predicted " +
                            std::to_string(predicted) + " (classes: " + std::to_string(classes_) + ")");
  }
  if (samples < 0) throw std::out_of_range("a confusion matrix count cannot be negative");
  counts_[truth * classes_ + predicted] += samples;
  total_ += samples;
}

double ConfusionMatrix::accuracy() const {
  if (total_ == 0) return 0;
  std::int64_t right = 0;
  for (std::int64_t c = 0; c < classes_; ++c) right += count(c, c);
  return static_cast<double>(right) / static_cast<double>(total_);
}

std::int64_t ConfusionMatrix::support(std::int64_t cls) const {
  std::int64_t n = 0;
  for (std::int64_t p = 0; p < classes_; ++p) n += count(cls, p);
  return n;
}

double ConfusionMatrix::precision(std::int64_t cls) const {
  std::int64_t predicted = 0;
  for (std::int64_t t = 0; t < classes_; ++t) predicted += count(t, cls);
  return predicted == 0 ? 0 : static_cast<double>(count(cls, cls)) / static_cast<double>(predicted);
}

double ConfusionMatrix::recall(std::int64_t cls) const {
  const std::int64_t n = support(cls);
  return n == 0 ? 0 : static_cast<double>(count(cls, cls)) / static_cast<double>(n);
}

double ConfusionMatrix::f1(std::int64_t cls) const {
  const double p = precision(cls), r = recall(cls);
  return p + r == 0 ? 0 : 2 * p * r / (p + r);
}

double ConfusionMatrix::macro_f1() const {
  double sum = 0;
  std::int64_t seen = 0;
  for (std::int64_t c = 0; c < classes_; ++c) {
    std::int64_t predicted = 0;
    for (std::int64_t t = 0; t < classes_; ++t) predicted += count(t, c);
    if (support(c) == 0 && predicted == 0) continue;
    sum += f1(c);
    ++seen;
  }
  return seen == 0 ? 0 : sum / static_cast<double>(seen);
}

double ConfusionMatrix::weighted_f1() const {
  if (total_ == 0) return 0;
  double sum = 0;
  for (std::int64_t c = 0; c < classes_; ++c) sum += f1(c) * static_cast<double>(support(c));
  return sum / static_cast<double>(total_);
}

}  // namespace petal::train
