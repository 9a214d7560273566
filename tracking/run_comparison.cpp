#include "tracking/run_comparison.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <map>
#include <set>

namespace petal::mlflow {

namespace {

// In order of preference: what a reader of an image-classification sweep looks at first.
const std::vector<std::string> kUsualMetrics = {
    "evaluate.test_accuracy", "evaluate.test_f1", "evaluate.val_accuracy", "finetune.val_accuracy",
    "train.val_accuracy",     "train.test_accuracy", "train.best_val_accuracy"};

std::string number_text(double value) {
  char text[32];
  std::snprintf(text, sizeof text, "%.4f", value);
  return text;
}

std::string start_text(std::int64_t ms) {
  if (ms <= 0) return "";
  const std::time_t seconds = static_cast<std::time_t>(ms / 1000);
  std::tm utc{};
  gmtime_r(&seconds, &utc);
  char text[32];
  std::strftime(text, sizeof text, "%Y-%m-%d %H:%M", &utc);
  return text;
}

bool looks_numeric(const std::string& text) {
  if (text.empty()) return false;
  char* end = nullptr;
  std::strtod(text.c_str(), &end);
  return end && *end == '\0';
}

}  // namespace

ComparisonTable compare_runs(std::vector<Run> runs, const ComparisonOptions& options) {
  std::vector<std::string> metrics = options.metrics;
  if (metrics.empty()) {
    if (!options.sort_metric.empty()) metrics.push_back(options.sort_metric);
    for (const auto& name : kUsualMetrics) {
      if (metrics.size() >= 4) break;
      if (std::find(metrics.begin(), metrics.end(), name) != metrics.end()) continue;
      const bool present = std::any_of(runs.begin(), runs.end(), [&](const Run& r) { return r.metrics.count(name) > 0; });
      if (present) metrics.push_back(name);
    }
  }
  const std::string sort_key = !options.sort_metric.empty() ? options.sort_metric : metrics.empty() ? "" : metrics.front();

  std::stable_sort(runs.begin(), runs.end(), [](const Run& a, const Run& b) { return a.info.start_time > b.info.start_time; });
  if (!sort_key.empty()) {
    std::stable_sort(runs.begin(), runs.end(), [&](const Run& a, const Run& b) {
      const auto ia = a.metrics.find(sort_key), ib = b.metrics.find(sort_key);
      const bool ha = ia != a.metrics.end() && std::isfinite(ia->second), hb = ib != b.metrics.end() && std::isfinite(ib->second);
      if (ha != hb) return ha;
      if (!ha) return false;
      return options.ascending ? ia->second < ib->second : ia->second > ib->second;
    });
  }
  if (options.top > 0 && runs.size() > static_cast<std::size_t>(options.top)) runs.resize(static_cast<std::size_t>(options.top));

  std::vector<std::string> params = options.params;
  if (params.empty()) {
    std::map<std::string, std::set<std::string>> values;
    for (const auto& r : runs) {
      for (const auto& [key, value] : r.params) values[key].insert(value);
    }
    for (const auto& [key, seen] : values) {
      bool everywhere = true;
      for (const auto& r : runs) everywhere = everywhere && r.params.count(key);
      if ((seen.size() > 1 || !everywhere) && runs.size() > 1) params.push_back(key);
    }
    // Few and short: a sweep's axes, not every default that an old run lacked.
    std::stable_sort(params.begin(), params.end(), [&](const std::string& a, const std::string& b) {
      return values[a].size() > values[b].size();
    });
    if (params.size() > static_cast<std::size_t>(options.max_params)) params.resize(static_cast<std::size_t>(options.max_params));
  }

  ComparisonTable table;
  table.header = {"run", "status", "started (UTC)"};
  table.header.insert(table.header.end(), params.begin(), params.end());
  table.header.insert(table.header.end(), metrics.begin(), metrics.end());
  table.header.push_back("run_id");
  for (const auto& r : runs) {
    std::vector<std::string> row = {r.info.run_name, r.info.status, start_text(r.info.start_time)};
    for (const auto& key : params) {
      const auto it = r.params.find(key);
      std::string value = it == r.params.end() ? "" : it->second;
      if (value.size() > 40) value = value.substr(0, 37) + "...";
      row.push_back(value);
    }
    for (const auto& key : metrics) {
      const auto it = r.metrics.find(key);
      row.push_back(it == r.metrics.end() ? "" : number_text(it->second));
    }
    row.push_back(r.info.run_id);
    table.rows.push_back(std::move(row));
  }
  return table;
}

std::string to_aligned_text(const ComparisonTable& table) {
  std::vector<std::size_t> width(table.header.size(), 0);
  std::vector<bool> numeric(table.header.size(), true);
  for (std::size_t c = 0; c < table.header.size(); ++c) width[c] = table.header[c].size();
  for (const auto& row : table.rows) {
    for (std::size_t c = 0; c < row.size() && c < width.size(); ++c) {
      width[c] = std::max(width[c], row[c].size());
      if (!row[c].empty() && !looks_numeric(row[c])) numeric[c] = false;
    }
  }
  std::string out;
  const auto line = [&](const std::vector<std::string>& cells, bool header) {
    std::string text;
    for (std::size_t c = 0; c < cells.size() && c < width.size(); ++c) {
      const std::string pad(width[c] - cells[c].size(), ' ');
      text += (c ? "  " : "") + (numeric[c] && !header ? pad + cells[c] : cells[c] + pad);
    }
    while (!text.empty() && text.back() == ' ') text.pop_back();
    out += text + "\n";
  };
  line(table.header, true);
  for (const auto& row : table.rows) line(row, false);
  return out;
}

}  // namespace petal::mlflow
