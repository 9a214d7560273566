#include "pipeline/schedule/schedule_state.h"

#include "pipeline/util/error.h"
#include "pipeline/util/fs.h"

namespace petal {

using nlohmann::json;

const char* to_string(TriggerOutcome outcome) {
  switch (outcome) {
    case TriggerOutcome::Unchanged: return "unchanged";
    case TriggerOutcome::Ran: return "ran";
    case TriggerOutcome::Failed: return "failed";
    case TriggerOutcome::Busy: return "busy";
    case TriggerOutcome::Interrupted: return "interrupted";
  }
  return "?";
}

namespace {

TriggerOutcome outcome_from(const std::string& text) {
  for (TriggerOutcome o : {TriggerOutcome::Unchanged, TriggerOutcome::Ran, TriggerOutcome::Failed, TriggerOutcome::Busy,
                           TriggerOutcome::Interrupted}) {
    if (text == to_string(o)) return o;
  }
  throw std::runtime_error("unknown trigger outcome \"" + text + "\"");
}

}  // namespace

json TriggerRecord::to_json() const {
  return {{"time_ms", time_ms},         {"outcome", to_string(outcome)}, {"check_seconds", check_seconds},
          {"run_seconds", run_seconds}, {"attempts", attempts},          {"reason", reason}};
}

TriggerRecord TriggerRecord::from_json(const json& j) {
  TriggerRecord r;
  r.time_ms = j.at("time_ms");
  r.outcome = outcome_from(j.at("outcome"));
  r.check_seconds = j.value("check_seconds", 0.0);
  r.run_seconds = j.value("run_seconds", 0.0);
  r.attempts = j.value("attempts", 0);
  r.reason = j.value("reason", "");
  return r;
}

void ScheduleState::add(TriggerRecord record) {
  triggers.push_back(std::move(record));
  if (triggers.size() > kKeptTriggers) triggers.erase(triggers.begin(), triggers.end() - kKeptTriggers);
}

json ScheduleState::to_json() const {
  json list = json::array();
  for (const auto& t : triggers) list.push_back(t.to_json());
  return {{"format", 1}, {"experiment", experiment}, {"validators", validators}, {"triggers", list}};
}

ScheduleState ScheduleState::load(const std::filesystem::path& file) {
  ScheduleState state;
  if (!std::filesystem::exists(file)) return state;
  try {
    const json j = json::parse(read_text_file(file));
    state.experiment = j.value("experiment", "");
    state.validators = j.value("validators", std::map<std::string, std::string>{});
    for (const auto& t : j.at("triggers")) state.triggers.push_back(TriggerRecord::from_json(t));
  } catch (const PetalError&) {
    throw;
  } catch (const std::exception& e) {
    throw PetalError(file.string() + ": unreadable schedule state (" + e.what() +
                         "); delete it to start the schedule's history afresh",
                     {}, kExitEnvironment);
  }
  return state;
}

void ScheduleState::save(const std::filesystem::path& file) const {
  std::filesystem::create_directories(file.parent_path());
  write_file_atomically(file, to_json().dump(1) + "\n");
}

}  // namespace petal
