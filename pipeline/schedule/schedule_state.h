#pragma once
// What a schedule remembers between triggers (and scheduler restarts), in
// <state>/schedules/<experiment name>.json, rewritten atomically: the remote validators it last
// saw for URL data sources and the outcome of recent triggers (`petal schedule --history`).
#include <cstdint>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace petal {

enum class TriggerOutcome {
  Unchanged,  // nothing changed: no run
  Ran,        // a run finished
  Failed,     // every attempt failed
  Busy,       // another trigger or scheduler held the lock: skipped
  Interrupted
};
const char* to_string(TriggerOutcome outcome);

struct TriggerRecord {
  std::int64_t time_ms = 0;    // when the trigger fired
  TriggerOutcome outcome = TriggerOutcome::Unchanged;
  double check_seconds = 0;    // deciding whether anything changed
  double run_seconds = 0;      // all attempts together
  int attempts = 0;
  std::string reason;          // what changed, or the last failure

  nlohmann::json to_json() const;
  static TriggerRecord from_json(const nlohmann::json& json);
};

struct ScheduleState {
  static constexpr std::size_t kKeptTriggers = 200;
  std::string experiment;
  std::map<std::string, std::string> validators;  // data URL -> its ETag/Last-Modified/length, as last seen
  std::vector<TriggerRecord> triggers;            // oldest first, at most kKeptTriggers

  void add(TriggerRecord record);
  nlohmann::json to_json() const;
  // An empty state when the file does not exist; PetalError naming the file when it is unreadable.
  static ScheduleState load(const std::filesystem::path& file);
  void save(const std::filesystem::path& file) const;
};

}  // namespace petal
