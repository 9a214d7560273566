#pragma once
#include <cstdint>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

namespace petal::mlflow {

// The write-ahead journal of one petal run's tracking operations. Every operation is appended
// (and fdatasync'd) before it is sent, and a `delivered` marker after the server accepted it, so
// nothing is lost whether the server is down or petal itself is killed: `petal sync` replays
// whatever is not marked delivered. Replays are safe because MLflow ignores exact duplicate
// metrics (same key, value, timestamp, step), accepts a param re-logged with the same value, and
// upserts tags.
//
// File: <dir>/<local_run_id>.spool, first line "# petal spool v1", then one JSON record a line:
//   {"seq": n, "op": "create_run", "experiment", "run_name", "start_time", "tags": [...]}
//   {"seq": n, "op": "log_batch", "metrics": [...], "params": [...], "tags": [...]}
//   {"seq": n, "op": "log_inputs", "datasets": [...]}
//   {"seq": n, "op": "update_run", "status", "end_time"}
//   {"op": "run_id", "run_id": "..."}      the MLflow run the records belong to
//   {"op": "link_builders", "experiment", "links": {petal_run_id: [stage, ...]}}
//   {"op": "delivered", "seq": n}          the server confirmed record n (records go in order, so
//                                          every record up to n is settled)
//   {"op": "skipped", "seq": n, "reason"}  record n names a local file that is gone: not sent
// Credentials are never written to it.
class Spool {
 public:
  Spool(std::filesystem::path dir, std::string local_run_id);

  const std::string& local_run_id() const { return local_run_id_; }
  const std::filesystem::path& file() const { return file_; }

  // Appends records, numbering each operation in place ("seq") with the next sequence number.
  void append(std::vector<nlohmann::json>& operations);
  void mark_delivered(std::int64_t seq);
  void mark_skipped(std::int64_t seq, const std::string& reason);
  void record_run_id(const std::string& run_id);
  void remove();  // after everything was delivered and the run ended

  struct State {
    std::vector<nlohmann::json> operations;  // in order, with "seq"
    std::string run_id;                      // "" if the run was never created on a server
    std::int64_t delivered = 0;              // highest delivered seq
    std::set<std::int64_t> skipped;          // seqs not sent because their file is gone
    std::size_t torn_lines = 0;
  };
  static State read(const std::filesystem::path& file);
  static std::vector<std::filesystem::path> pending(const std::filesystem::path& dir);

 private:
  void write_lines(const std::string& text);
  std::filesystem::path file_;
  std::string local_run_id_;
  std::int64_t next_seq_ = 1;
};

}  // namespace petal::mlflow
