#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "tracking/mlflow_client.h"
#include "tracking/spool.h"

namespace petal::mlflow {

struct RunLoggerOptions {
  std::size_t batch_size = 1000;  // a batch is sent when this many values wait ...
  int flush_interval_ms = 1000;   // ... or when the oldest has waited this long
};

// Logs one MLflow run asynchronously and without loss. Calls from the training thread only append
// to an in-memory queue (a mutex and a vector push: well under a microsecond); a background thread
// writes each batch to the run's spool (fdatasync) and then sends it. If the server is unreachable
// after HttpClient's retries, the logger goes offline: everything keeps going to the spool, and
// `petal sync` (or `sync_spools`) delivers it later. A run started offline gets a real MLflow run
// when replayed.
class RunLogger {
 public:
  // `client` may be null: the run is then spooled only.
  RunLogger(std::shared_ptr<Client> client, const std::filesystem::path& spool_dir, const std::string& local_run_id,
            RunLoggerOptions options = {});
  ~RunLogger();  // flushes what is queued
  RunLogger(const RunLogger&) = delete;
  RunLogger& operator=(const RunLogger&) = delete;

  // `server` (credentials stripped) is recorded so `petal sync` knows where the spool belongs;
  // "" means petal's embedded local server.
  void start_run(const std::string& experiment, const std::string& run_name, const std::vector<Tag>& tags,
                 std::int64_t start_time_ms, const std::string& server = "");
  // Timestamps are taken here, once per value, so a replayed batch is recognised as a duplicate.
  void log_metric(const std::string& key, double value, std::int64_t step = 0);
  // A value recorded earlier (a stage's per-epoch series), with the time it was recorded.
  void log_metric_at(const std::string& key, double value, std::int64_t step, std::int64_t timestamp_ms);
  void log_param(const std::string& key, const std::string& value);
  // A file or folder uploaded under `artifact_path` of the run (spooled like everything else; the
  // local file must still exist when the spool is replayed — cache entries do, until gc).
  void log_artifact(const std::filesystem::path& local_path, const std::string& artifact_path);
  void set_tag(const std::string& key, const std::string& value);
  void log_inputs(const std::vector<Dataset>& datasets);
  // Flushes, sets the final status (FINISHED, FAILED, KILLED) and end time. If everything reached
  // the server, the spool is removed.
  void end_run(const std::string& status);
  // Blocks until everything logged so far is delivered or, when offline, spooled.
  void flush();

  bool offline() const { return offline_.load(); }
  std::string run_id() const;
  std::string last_error() const;
  std::uint64_t values_logged() const { return values_logged_.load(); }
  const std::filesystem::path& spool_file() const { return spool_.file(); }

 private:
  struct Item {
    enum Kind { Metric, Param, Tag, Operation } kind;
    std::string key;
    std::string text;
    double value = 0;
    std::int64_t timestamp = 0;
    std::int64_t step = 0;
    nlohmann::json operation;
  };
  void enqueue(Item item, bool urgent);
  void background();
  std::vector<nlohmann::json> to_operations(std::vector<Item>& items) const;

  std::shared_ptr<Client> client_;
  Spool spool_;
  RunLoggerOptions options_;

  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::condition_variable progress_;
  std::vector<Item> queue_;
  std::uint64_t enqueued_ = 0;   // items ever queued
  std::uint64_t processed_ = 0;  // items spooled and delivered (or spooled while offline)
  bool flush_requested_ = false;
  bool stop_ = false;
  bool completed_ = false;  // everything delivered and the run ended: no spool left
  std::string run_id_;
  std::string last_error_;
  std::atomic<bool> offline_{false};
  std::atomic<std::uint64_t> values_logged_{0};
  std::vector<nlohmann::json> undelivered_;  // spooled, not yet accepted by the server
  std::thread thread_;
};

// Sends one spooled operation. `run_id` is filled in by a create_run (which first looks for a run
// already created for this spool, tagged petal.local_run_id, so a replay never makes two runs).
void deliver_operation(Client& client, const nlohmann::json& operation, std::string& run_id, Spool& spool);

struct SyncReport {
  std::size_t spools = 0;
  std::size_t delivered_operations = 0;
  std::size_t completed = 0;  // spools fully delivered and removed
  std::vector<std::string> errors;
};
// Replays every spool in `spool_dir` in order, exactly once from the user's point of view.
// `client_for` gives the client for a spool's recorded server ("" = the embedded one).
SyncReport sync_spools(const std::function<Client&(const std::string& server)>& client_for,
                       const std::filesystem::path& spool_dir);

}  // namespace petal::mlflow
