#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <map>
#include <functional>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "pipeline/util/file_lock.h"
#include "tracking/mlflow_client.h"
#include "tracking/spool.h"

namespace petal::mlflow {

struct RunLoggerOptions {
  std::size_t batch_size = 1000;  // a batch is journaled when this many values wait ...
  int flush_interval_ms = 1000;   // ... or when the oldest has waited this long
  // How long end_run and flush wait for the server once SIGINT/SIGTERM was requested; what is not
  // delivered by then stays in the spool (for `petal sync`, or the next `petal run`).
  int interrupted_wait_ms = 500;
};

// Logs one MLflow run asynchronously and without loss. Invariants (docs/architecture.md):
//  - the caller never blocks on the network: a call appends to an in-memory queue;
//  - a journal thread writes queued values to the run's spool (fdatasync) within
//    `flush_interval_ms`, whatever the server does;
//  - a sender thread delivers journaled operations in order; one leaves the spool (is marked
//    delivered) only after the server confirmed it with a 2xx MLflow answer;
//  - "server away" (no answer, time-out, 429, 5xx after HttpClient's retries) turns the logger
//    offline, and "server refused" (any other answer: 401, 403, 404, an HTML page) stops delivery
//    with the server's message; either way the rest stays in the spool for `petal sync`.
// A run started offline gets a real MLflow run when replayed.
class RunLogger {
 public:
  // `client` may be null: the run is then spooled only. The logger aborts the client's request in
  // flight when it must stop waiting (an interrupt), so give it a client of its own.
  RunLogger(std::shared_ptr<Client> client, const std::filesystem::path& spool_dir, const std::string& local_run_id,
            RunLoggerOptions options = {});
  ~RunLogger();  // journals what is queued; stops sending
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
  // Tags `petal.stage.<stage>.built_by_mlflow_run` with the MLflow run of the petal run that built
  // each reused stage, looked up when delivered (so runs synced later get the links too).
  void link_builders(const std::string& experiment, const std::map<std::string, std::vector<std::string>>& stages_by_petal_run);
  // Journals the final status (FINISHED, FAILED, KILLED) and end time, and waits for delivery. If
  // everything reached the server, the spool is removed.
  void end_run(const std::string& status);
  // Blocks until everything logged so far is journaled and then delivered, or given up on (offline,
  // refused). After an interrupt it waits at most `interrupted_wait_ms` more, then abandons the
  // request in flight and goes offline (all of it is in the spool).
  void flush();
  // Blocks until everything logged so far is written to the spool (not necessarily delivered).
  void journal();

  // Not delivering: the server is away, it refused, or there was never a client.
  bool offline() const { return state_.load() != State::Online; }
  // The server answered with a refusal (auth, not found, not MLflow): fix the cause, then sync.
  bool refused() const { return state_.load() == State::Refused; }
  std::string run_id() const;
  std::string last_error() const;
  std::uint64_t values_logged() const { return values_logged_.load(); }
  const std::filesystem::path& spool_file() const { return spool_.file(); }

 private:
  enum class State { Online, Away, Refused };
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
  void journal_loop();
  void send_loop();
  void deliver_outbox();
  void give_up(State state, const std::string& message);
  std::vector<nlohmann::json> to_operations(std::vector<Item>& items) const;

  std::shared_ptr<Client> client_;
  Spool spool_;
  RunLoggerOptions options_;
  FileLock owner_;  // keeps `petal sync` off this spool while the run is live (taken before any write)

  mutable std::mutex mutex_;
  std::condition_variable journal_wake_;
  std::condition_variable send_wake_;
  std::condition_variable progress_;
  std::vector<Item> queue_;
  std::uint64_t enqueued_ = 0;   // items ever queued
  std::uint64_t journaled_ = 0;  // items written to the spool
  std::deque<nlohmann::json> outbox_;  // journaled operations not yet settled
  std::uint64_t operations_journaled_ = 0;
  std::uint64_t operations_settled_ = 0;  // delivered, or left in the spool once offline
  bool flush_requested_ = false;
  bool stop_ = false;
  bool completed_ = false;  // everything delivered and the run ended: no spool left
  std::string run_id_;
  std::string last_error_;
  std::atomic<State> state_{State::Online};
  std::atomic<std::uint64_t> values_logged_{0};
  std::thread journal_thread_;
  std::thread send_thread_;
};

// A client for a RunLogger: an interrupt does not abort its requests at once, since the logger
// first tries to deliver the final status (within RunLoggerOptions::interrupted_wait_ms). Null for
// an empty URI.
std::shared_ptr<Client> make_logger_client(const std::string& tracking_uri);

// Sends one spooled operation. `run_id` is filled in by a create_run (which first looks for a run
// already created for this spool, tagged petal.local_run_id, so a replay never makes two runs).
void deliver_operation(Client& client, const nlohmann::json& operation, std::string& run_id, Spool& spool);

struct SyncReport {
  std::size_t spools = 0;
  std::size_t delivered_operations = 0;
  std::size_t completed = 0;  // spools fully delivered and removed
  std::size_t killed = 0;     // runs left RUNNING by a killed petal, now ended as KILLED
  std::vector<std::string> errors;    // spools kept: the server is away or refused
  std::vector<std::string> warnings;  // operations skipped (an artifact removed locally)
};
// Replays every spool in `spool_dir` whose run is not live (its lock is free), in order, exactly
// once from the user's point of view; an operation is marked delivered only after the server
// confirmed it. A spool without a final status belongs to a petal that was killed: its run is
// ended as KILLED (at the spool's last write). `client_for` gives the client for a spool's recorded
// server ("" = the embedded one), or null to leave that spool alone.
SyncReport sync_spools(const std::function<Client*(const std::string& server)>& client_for,
                       const std::filesystem::path& spool_dir);

}  // namespace petal::mlflow
