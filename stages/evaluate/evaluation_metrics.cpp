#include "stages/evaluate/evaluation_metrics.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <set>
#include <stdexcept>

namespace petal::evaluate {

namespace {

constexpr double kLogLossFloor = 1e-15;  // scikit-learn's clipping of p_true

std::string sample_name(std::size_t i) { return "sample " + std::to_string(i); }

void check_inputs(const std::vector<std::int64_t>& labels, const std::vector<float>& probabilities,
                  const std::vector<std::string>& class_names, int top_k) {
  const std::size_t n = labels.size(), c = class_names.size();
  if (c == 0) throw std::invalid_argument("no class names given: pass one name per class, in class-index order");
  if (n == 0) throw std::invalid_argument("no samples to evaluate: the split is empty (skip it or give it samples)");
  if (top_k < 1) throw std::invalid_argument("top_k must be at least 1 (got " + std::to_string(top_k) + ")");
  if (probabilities.size() != n * c) {
    throw std::invalid_argument("probabilities hold " + std::to_string(probabilities.size()) + " values, expected " +
                                std::to_string(n) + " samples x " + std::to_string(c) + " classes = " +
                                std::to_string(n * c) + " (row-major, one row per label)");
  }
  for (std::size_t i = 0; i < n; ++i) {
    if (labels[i] < 0 || labels[i] >= static_cast<std::int64_t>(c)) {
      throw std::invalid_argument(sample_name(i) + " has label " + std::to_string(labels[i]) +
                                  ", expected a class index in [0, " + std::to_string(c) + ")");
    }
    for (std::size_t k = 0; k < c; ++k) {
      const float p = probabilities[i * c + k];
      if (!std::isfinite(p) || p < 0) {
        throw std::invalid_argument(sample_name(i) + " has probability " + std::to_string(p) + " for class " +
                                    std::to_string(k) + ", expected a finite value >= 0 (softmax output)");
      }
    }
  }
}

// True when `truth` is among the k classes ranked first by (probability descending, index
// ascending): fewer than k classes outrank it.
bool in_top_k(const float* row, std::int64_t classes, std::int64_t truth, int k) {
  int ahead = 0;
  for (std::int64_t c = 0; c < classes; ++c) {
    if (row[c] > row[truth] || (row[c] == row[truth] && c < truth)) ++ahead;
  }
  return ahead < k;
}

std::string key(const std::string& prefix, const std::string& name) {
  return prefix.empty() ? name : prefix + "_" + name;
}

std::string csv_field(const std::string& text) {
  if (text.find_first_of(",\"\r\n") == std::string::npos) return text;
  std::string quoted = "\"";
  for (const char ch : text) {
    if (ch == '"') quoted += '"';
    quoted += ch;
  }
  return quoted + "\"";
}

std::string fixed6(double value) {
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%.6f", value);
  return buffer;
}

}  // namespace

std::int64_t predicted_class(const float* row, std::int64_t classes) {
  // max_element returns the first of equal maxima: ties go to the lowest index.
  return std::max_element(row, row + classes) - row;
}

EvaluationResult evaluate_predictions(const std::vector<std::int64_t>& labels, const std::vector<float>& probabilities,
                                      const std::vector<std::string>& class_names, int top_k) {
  check_inputs(labels, probabilities, class_names, top_k);
  const auto classes = static_cast<std::int64_t>(class_names.size());
  EvaluationResult result;
  result.classes = class_names;
  result.samples = static_cast<std::int64_t>(labels.size());
  result.top_k = top_k;
  result.confusion = train::ConfusionMatrix(classes);

  const bool with_top_k = classes > top_k;
  std::int64_t top_k_hits = 0;
  double loss_sum = 0;
  for (std::size_t i = 0; i < labels.size(); ++i) {
    const float* row = probabilities.data() + i * class_names.size();
    result.confusion.add(labels[i], predicted_class(row, classes));
    if (with_top_k && in_top_k(row, classes, labels[i], top_k)) ++top_k_hits;
    loss_sum -= std::log(std::max(static_cast<double>(row[labels[i]]), kLogLossFloor));
  }
  const auto n = static_cast<double>(result.samples);
  result.accuracy = result.confusion.accuracy();
  if (with_top_k) result.top_k_accuracy = static_cast<double>(top_k_hits) / n;
  result.log_loss = loss_sum / n;

  double precision_sum = 0, recall_sum = 0;
  std::int64_t averaged = 0;
  for (std::int64_t c = 0; c < classes; ++c) {
    const train::ConfusionMatrix& m = result.confusion;
    result.per_class.push_back({class_names[static_cast<std::size_t>(c)], m.precision(c), m.recall(c), m.f1(c), m.support(c)});
    std::int64_t predicted = 0;
    for (std::int64_t t = 0; t < classes; ++t) predicted += m.count(t, c);
    if (m.support(c) == 0 && predicted == 0) continue;  // the set macro_f1 averages over
    precision_sum += m.precision(c);
    recall_sum += m.recall(c);
    ++averaged;
  }
  // N > 0, so at least one class has a sample and `averaged` >= 1.
  result.macro_precision = precision_sum / static_cast<double>(averaged);
  result.macro_recall = recall_sum / static_cast<double>(averaged);
  result.macro_f1 = result.confusion.macro_f1();
  result.weighted_f1 = result.confusion.weighted_f1();
  return result;
}

nlohmann::json EvaluationResult::to_json() const {
  nlohmann::json report;
  report["samples"] = samples;
  report["accuracy"] = accuracy;
  if (top_k_accuracy) report["top" + std::to_string(top_k) + "_accuracy"] = *top_k_accuracy;
  report["macro_precision"] = macro_precision;
  report["macro_recall"] = macro_recall;
  report["macro_f1"] = macro_f1;
  report["weighted_f1"] = weighted_f1;
  report["log_loss"] = log_loss;
  nlohmann::json per = nlohmann::json::object();
  for (const ClassScores& s : per_class) {
    per[s.name] = {{"precision", s.precision}, {"recall", s.recall}, {"f1", s.f1}, {"support", s.support}};
  }
  report["per_class"] = per;
  nlohmann::json counts = nlohmann::json::array();
  for (std::int64_t t = 0; t < confusion.classes(); ++t) {
    nlohmann::json row = nlohmann::json::array();
    for (std::int64_t p = 0; p < confusion.classes(); ++p) row.push_back(confusion.count(t, p));
    counts.push_back(row);
  }
  report["confusion_matrix"] = {{"classes", classes}, {"rows", "true"}, {"columns", "predicted"}, {"counts", counts}};
  return report;
}

std::vector<std::pair<std::string, double>> EvaluationResult::metrics(const std::string& prefix) const {
  std::vector<std::pair<std::string, double>> out = {{key(prefix, "accuracy"), accuracy}};
  if (top_k_accuracy) out.emplace_back(key(prefix, "top" + std::to_string(top_k) + "_accuracy"), *top_k_accuracy);
  out.emplace_back(key(prefix, "f1"), macro_f1);
  out.emplace_back(key(prefix, "weighted_f1"), weighted_f1);
  out.emplace_back(key(prefix, "precision"), macro_precision);
  out.emplace_back(key(prefix, "recall"), macro_recall);
  out.emplace_back(key(prefix, "log_loss"), log_loss);
  out.emplace_back(key(prefix, "samples"), static_cast<double>(samples));
  std::set<std::string> used;
  for (std::size_t c = 0; c < per_class.size(); ++c) {
    std::string name = key(prefix, "f1_" + metric_name_part(per_class[c].name));
    if (!used.insert(name).second) {  // e.g. "a+b" and "a_b": keep both, told apart by index
      name += "_" + std::to_string(c);
      used.insert(name);
    }
    out.emplace_back(name, per_class[c].f1);
  }
  return out;
}

std::string metric_name_part(const std::string& text) {
  std::string out;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const auto ch = static_cast<unsigned char>(text[i]);
    if ((ch & 0xC0) == 0x80) continue;  // a UTF-8 continuation byte: its character already became '_'
    // ASCII only (not std::isalnum, which depends on the locale).
    const bool allowed = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9');
    if (allowed || ch == '_' || ch == '-' || ch == ' ' || ch == '/') {
      out += static_cast<char>(ch);
    } else if (ch == '.') {
      out += (!out.empty() && out.back() == '.') ? '_' : '.';
    } else {
      out += '_';
    }
  }
  return out;
}

void write_confusion_csv(const train::ConfusionMatrix& matrix, const std::vector<std::string>& classes,
                         const std::filesystem::path& file, bool normalized) {
  if (static_cast<std::int64_t>(classes.size()) != matrix.classes()) {
    throw std::invalid_argument("write_confusion_csv: " + std::to_string(classes.size()) + " class names for a " +
                                std::to_string(matrix.classes()) + "-class confusion matrix; pass one name per class");
  }
  std::string csv = csv_field("true\\predicted");
  for (const std::string& name : classes) csv += "," + csv_field(name);
  csv += "\n";
  for (std::int64_t t = 0; t < matrix.classes(); ++t) {
    csv += csv_field(classes[static_cast<std::size_t>(t)]);
    const std::int64_t support = matrix.support(t);
    for (std::int64_t p = 0; p < matrix.classes(); ++p) {
      if (!normalized) {
        csv += "," + std::to_string(matrix.count(t, p));
      } else {
        const double share = support == 0 ? 0.0 : static_cast<double>(matrix.count(t, p)) / static_cast<double>(support);
        csv += "," + fixed6(share);
      }
    }
    csv += "\n";
  }
  // A plain write: the stage writes into its temp folder, which the cache commits as a whole.
  std::ofstream out(file, std::ios::binary | std::ios::trunc);
  out << csv;
  out.flush();
  if (!out) throw std::runtime_error("cannot write " + file.string() + ": check that its folder exists and is writable");
}

}  // namespace petal::evaluate
