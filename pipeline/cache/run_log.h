#pragma once
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace petal {

// One line of the run log: a stage that ran, was reused, failed or was interrupted.
struct RunRecord {
  std::string run_id;
  std::string experiment;
  std::string stage;
  std::string key;
  std::string status;  // "ran", "cached", "failed", "interrupted"
  std::int64_t start_ms = 0;
  std::int64_t end_ms = 0;
  std::string error;   // for "failed"
};

// The append-only history of stage executions (like ninja's .ninja_log): the first line names the
// format version; each record is one JSON line appended with a single write under an flock.
// Readers skip a torn last line; a log of another version is set aside and started afresh, never
// misread. When it grows past a limit it is compacted (temp file + rename) to the latest record
// of each (experiment, stage, status).
class RunLog {
 public:
  explicit RunLog(std::filesystem::path file);

  void append(const std::vector<RunRecord>& records, bool durable);
  std::vector<RunRecord> read() const;
  // The most recent successful ("ran" or "cached") record of a stage.
  std::optional<RunRecord> last_success(const std::string& experiment, const std::string& stage) const;
  void compact();

  static constexpr const char* kHeader = "# petal run log v1";
  static constexpr std::uint64_t kCompactAboveBytes = 4u << 20;

 private:
  std::filesystem::path file_;
};

}  // namespace petal
