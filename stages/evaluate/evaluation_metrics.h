#pragma once
// Scores of a classifier on a held-out split, from true labels and predicted class probabilities.
// No LibTorch, no OpenCV, nothing else of petal_core's: the evaluate stage (in petal-worker) hands
// over plain vectors, and petal_core's tests check the arithmetic against hand-computed values.
// Per-class counting is train::ConfusionMatrix's job.
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "stages/train/classification_metrics.h"

namespace petal::evaluate {

struct ClassScores {
  std::string name;
  double precision = 0;  // 0 when nothing was predicted as this class
  double recall = 0;     // 0 when the class has no samples
  double f1 = 0;
  std::int64_t support = 0;  // samples whose true class this is
};

struct EvaluationResult {
  std::vector<std::string> classes;
  std::int64_t samples = 0;
  double accuracy = 0;
  // Top-k accuracy exists only when there are more than k classes: with k or fewer, every sample's
  // true class is among the k most probable, so the value would always be 1 and say nothing.
  int top_k = 5;
  std::optional<double> top_k_accuracy;
  std::vector<ClassScores> per_class;  // in class-index order
  // Macro averages are over the classes that have samples or predictions (scikit-learn's labels =
  // union of y_true and y_pred), the same set train::ConfusionMatrix::macro_f1 uses.
  double macro_precision = 0;
  double macro_recall = 0;
  double macro_f1 = 0;
  double weighted_f1 = 0;  // weighted by support
  // Mean of -ln(max(p_true, 1e-15)): scikit-learn's clipping, so a confident mistake costs at most
  // ~34.5 instead of infinity.
  double log_loss = 0;
  train::ConfusionMatrix confusion{1};  // row = true class, column = predicted class

  // A readable report: {"samples", "accuracy", "top5_accuracy" (when present), "macro_f1", ...,
  // "per_class": {<class name>: {precision, recall, f1, support}},
  // "confusion_matrix": {"classes": [...], "rows": "true", "columns": "predicted", "counts": [[...]]}}.
  nlohmann::json to_json() const;

  // Flat metrics for MLflow, each key prefixed with `prefix` + "_" (no "_" when prefix is empty):
  // <p>_accuracy, <p>_top5_accuracy (when present), <p>_f1 (macro), <p>_weighted_f1, <p>_precision
  // and <p>_recall (macro), <p>_log_loss, <p>_samples, then <p>_f1_<class> for each class, its name
  // made a valid MLflow key by metric_name_part (a clash between two names gets "_<index>" added).
  std::vector<std::pair<std::string, double>> metrics(const std::string& prefix) const;
};

// The predicted class of one probability row: the most probable class; a tie goes to the lowest
// class index (what std::max_element and torch.argmax on CPU do), so results are deterministic.
std::int64_t predicted_class(const float* row, std::int64_t classes);

// `labels` holds N true class indices; `probabilities` is N x C, row-major, each row a probability
// distribution over `class_names` (C names). A sample counts as top-k correct when its true class is
// among the k classes ranked first by probability, ties ranked by lower index (as predicted_class).
// Throws std::invalid_argument, naming the sample and what was expected, when the sizes do not
// match, a label is outside [0, C), a probability is negative or not finite, or N is 0.
EvaluationResult evaluate_predictions(const std::vector<std::int64_t>& labels, const std::vector<float>& probabilities,
                                      const std::vector<std::string>& class_names, int top_k = 5);

// `text` with every character MLflow does not allow in a metric name (it allows letters, digits,
// '_', '-', '.', ' ' and '/') replaced by '_' (one per UTF-8 character), and ".." (which MLflow
// rejects) broken up as "._".
std::string metric_name_part(const std::string& text);

// The confusion matrix as CSV: header "true\predicted,<class>,...", then one row per true class,
// starting with its name. Raw counts, or with `normalized` each row divided by its support (6
// decimals; a class without samples gives a row of 0). Names with ',', '"' or line breaks are
// quoted (RFC 4180). Throws std::invalid_argument when `classes` does not match the matrix, and
// std::runtime_error naming the file when it cannot be written.
void write_confusion_csv(const train::ConfusionMatrix& matrix, const std::vector<std::string>& classes,
                         const std::filesystem::path& file, bool normalized);

}  // namespace petal::evaluate
