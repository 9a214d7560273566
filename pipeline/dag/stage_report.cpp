#include "pipeline/dag/stage_kind.h"

namespace petal {

nlohmann::json StageReport::to_json() const {
  return nlohmann::json{{"metrics", metrics}, {"notes", notes}};
}

StageReport StageReport::from_json(const nlohmann::json& json) {
  StageReport report;
  if (json.contains("metrics") && json["metrics"].is_object()) report.metrics = json["metrics"];
  if (json.contains("notes") && json["notes"].is_array()) {
    for (const auto& n : json["notes"]) {
      if (n.is_string()) report.notes.push_back(n.get<std::string>());
    }
  }
  return report;
}

}  // namespace petal
