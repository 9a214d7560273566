#include "pipeline/sweep/sweep_state.h"

#include "pipeline/util/error.h"
#include "pipeline/util/fs.h"

namespace petal {

using nlohmann::json;

const char* to_string(TrialStatus status) {
  switch (status) {
    case TrialStatus::Pending: return "pending";
    case TrialStatus::Running: return "running";
    case TrialStatus::Finished: return "finished";
    case TrialStatus::Failed: return "failed";
    case TrialStatus::Interrupted: return "interrupted";
    case TrialStatus::Pruned: return "pruned";
  }
  return "pending";
}

TrialStatus trial_status_from(const std::string& text) {
  for (auto s : {TrialStatus::Running, TrialStatus::Finished, TrialStatus::Failed, TrialStatus::Interrupted, TrialStatus::Pruned}) {
    if (text == to_string(s)) return s;
  }
  return TrialStatus::Pending;
}

json SweepState::to_json() const {
  json trials_json = json::array();
  for (const auto& t : trials) {
    trials_json.push_back({{"id", t.id},
                           {"label", t.label},
                           {"values", t.values},
                           {"status", to_string(t.status)},
                           {"petal_run_id", t.petal_run_id},
                           {"mlflow_run_id", t.mlflow_run_id},
                           {"metrics", t.metrics},
                           {"curves", t.curves},
                           {"objective_key", t.objective_key},
                           {"objective", t.objective},
                           {"seconds", t.seconds},
                           {"attempts", t.attempts},
                           {"stages_ran", t.stages_ran},
                           {"stages_cached", t.stages_cached},
                           {"error", t.error}});
  }
  return {{"format", "petal-sweep-state 1"},
          {"sweep_id", sweep_id},
          {"name", name},
          {"digest", digest},
          {"sweep_file", sweep_file},
          {"parent_petal_run_id", parent_petal_run_id},
          {"parent_mlflow_run_id", parent_mlflow_run_id},
          {"created_ms", created_ms},
          {"trials", trials_json}};
}

SweepState SweepState::from_json(const json& j) {
  SweepState s;
  s.sweep_id = j.value("sweep_id", "");
  s.name = j.value("name", "");
  s.digest = j.value("digest", "");
  s.sweep_file = j.value("sweep_file", "");
  s.parent_petal_run_id = j.value("parent_petal_run_id", "");
  s.parent_mlflow_run_id = j.value("parent_mlflow_run_id", "");
  s.created_ms = j.value("created_ms", std::int64_t{0});
  for (const auto& t : j.value("trials", json::array())) {
    TrialRecord r;
    r.id = t.value("id", "");
    r.label = t.value("label", "");
    r.values = t.value("values", json::object());
    r.status = trial_status_from(t.value("status", ""));
    r.petal_run_id = t.value("petal_run_id", "");
    r.mlflow_run_id = t.value("mlflow_run_id", "");
    r.metrics = t.value("metrics", json::object());
    r.curves = t.value("curves", json::array());
    r.objective_key = t.value("objective_key", "");
    r.objective = t.contains("objective") ? t.at("objective") : json(nullptr);
    r.seconds = t.value("seconds", 0.0);
    r.attempts = t.value("attempts", 0);
    r.stages_ran = t.value("stages_ran", 0);
    r.stages_cached = t.value("stages_cached", 0);
    r.error = t.value("error", "");
    s.trials.push_back(std::move(r));
  }
  return s;
}

std::optional<SweepState> SweepState::load(const std::filesystem::path& file) {
  if (!std::filesystem::exists(file)) return std::nullopt;
  try {
    const json j = json::parse(read_text_file(file));
    if (j.value("format", "") != "petal-sweep-state 1") {
      throw PetalError("sweep state " + file.string() + " has an unknown format; move it aside to start the sweep afresh",
                       {}, kExitEnvironment);
    }
    return from_json(j);
  } catch (const json::exception& e) {
    throw PetalError("sweep state " + file.string() + " is not valid JSON (" + e.what() +
                         "); move it aside to start the sweep afresh (finished stages stay cached)",
                     {}, kExitEnvironment);
  }
}

void SweepState::save(const std::filesystem::path& file) const {
  std::error_code ec;
  std::filesystem::create_directories(file.parent_path(), ec);
  write_file_atomically(file, to_json().dump(1) + "\n");
}

TrialRecord* SweepState::find(const std::string& trial_id) {
  for (auto& t : trials) {
    if (t.id == trial_id) return &t;
  }
  return nullptr;
}

}  // namespace petal
