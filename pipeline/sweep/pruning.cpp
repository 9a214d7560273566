#include "pipeline/sweep/pruning.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <nlohmann/json.hpp>

#include "pipeline/util/fs.h"

namespace petal {

double quantile(std::vector<double> values, double q) {
  std::sort(values.begin(), values.end());
  const double position = q * static_cast<double>(values.size() - 1);
  const auto below = static_cast<std::size_t>(std::floor(position));
  const std::size_t above = std::min(values.size() - 1, below + 1);
  return values[below] + (position - static_cast<double>(below)) * (values[above] - values[below]);
}

// An epoch-N folder is renamed into place complete (checkpoint.cpp), so a listed one can be read;
// an older one is deleted after a newer lands, so a read may fail: the next poll tries again.
std::vector<std::pair<int, double>> checkpoint_history(const std::filesystem::path& resume_dir, const std::string& metric) {
  std::vector<std::pair<int, double>> history;
  std::error_code ec;
  int newest = -1;
  for (const auto& entry : std::filesystem::directory_iterator(resume_dir, ec)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind("epoch-", 0) != 0 || name.find('.') != std::string::npos) continue;
    newest = std::max(newest, std::atoi(name.c_str() + 6));
  }
  if (newest < 0) return history;
  try {
    const nlohmann::json state = nlohmann::json::parse(read_text_file(resume_dir / ("epoch-" + std::to_string(newest)) / "state.json"));
    for (const auto& row : state.value("history", nlohmann::json::array())) {
      if (row.contains("epoch") && row.contains(metric) && row.at(metric).is_number()) {
        history.emplace_back(row.at("epoch").get<int>(), row.at(metric).get<double>());
      }
    }
  } catch (const std::exception&) {
    history.clear();
  }
  return history;
}

std::vector<std::pair<int, double>> curve_history(const nlohmann::json& curves, const std::string& stage, const std::string& metric) {
  std::vector<std::pair<int, double>> history;
  for (const auto& c : curves) {
    if (c.value("stage", "") != stage || c.value("name", "") != metric) continue;
    for (const auto& point : c.value("points", nlohmann::json::array())) history.emplace_back(point[0].get<int>(), point[1].get<double>());
  }
  return history;
}

std::vector<int> SuccessiveHalving::rungs_up_to(int epoch) const {
  std::vector<int> rungs;
  for (long long rung = std::max(1, config_.grace_epochs); rung <= epoch; rung *= std::max(2, config_.reduction_factor)) {
    rungs.push_back(static_cast<int>(rung));
  }
  return rungs;
}

std::string SuccessiveHalving::observe(const std::string& trial, const std::vector<std::pair<int, double>>& history) {
  if (!config_.enabled || history.empty()) return "";
  std::lock_guard<std::mutex> lock(mutex_);
  for (int rung : rungs_up_to(history.back().first)) {
    auto& at_rung = recorded_[rung];
    if (at_rung.count(trial)) continue;
    const auto point = std::find_if(history.begin(), history.end(), [&](const auto& p) { return p.first == rung; });
    if (point == history.end() || !std::isfinite(point->second)) continue;
    at_rung[trial] = point->second;
    std::vector<double> values;
    for (const auto& [name, value] : at_rung) values.push_back(value);
    const double eta = std::max(2, config_.reduction_factor);
    const double cutoff = quantile(values, config_.maximize ? 1.0 - 1.0 / eta : 1.0 / eta);
    const bool poor = config_.maximize ? point->second < cutoff : point->second > cutoff;
    if (poor) {
      char reason[200];
      std::snprintf(reason, sizeof reason, "pruned at epoch %d: %s %.4f %s the rung's cutoff %.4f (%zu trials there)", rung,
                    config_.metric.c_str(), point->second, config_.maximize ? "<" : ">", cutoff, values.size());
      return reason;
    }
  }
  return "";
}

}  // namespace petal
