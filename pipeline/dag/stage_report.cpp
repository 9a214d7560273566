#include <chrono>

#include "pipeline/dag/stage_kind.h"

namespace petal {

using nlohmann::json;

void StageReport::metric(const std::string& name, double value, std::int64_t step) {
  const auto now = std::chrono::duration_cast<std::chrono::milliseconds>(
                       std::chrono::system_clock::now().time_since_epoch()).count();
  series.push_back(Point{name, value, step, now});
  metrics[name] = value;  // the final value is the last one recorded
}

json StageReport::to_json() const {
  json points = json::array();
  for (const auto& p : series) points.push_back({p.name, p.value, p.step, p.timestamp_ms});
  return json{{"metrics", metrics}, {"series", points}, {"artifacts", artifacts}, {"notes", notes}};
}

StageReport StageReport::from_json(const json& j) {
  StageReport report;
  if (j.contains("metrics") && j["metrics"].is_object()) report.metrics = j["metrics"];
  for (const auto& p : j.value("series", json::array())) {
    if (p.is_array() && p.size() == 4 && p[0].is_string() && p[1].is_number()) {
      report.series.push_back(Point{p[0].get<std::string>(), p[1].get<double>(), p[2].get<std::int64_t>(),
                                    p[3].get<std::int64_t>()});
    }
  }
  for (const auto& a : j.value("artifacts", json::array())) {
    if (a.is_string()) report.artifacts.push_back(a.get<std::string>());
  }
  for (const auto& n : j.value("notes", json::array())) {
    if (n.is_string()) report.notes.push_back(n.get<std::string>());
  }
  return report;
}

}  // namespace petal
