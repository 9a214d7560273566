#include "tracking/run_logger.h"

#include <chrono>
#include <cmath>
#include <sys/stat.h>

#include "pipeline/util/cancel.h"

#include "pipeline/util/file_lock.h"
#include "pipeline/util/fs.h"
#include "tracking/mlflow_limits.h"

namespace petal::mlflow {

using nlohmann::json;

namespace {

json tags_json(const std::vector<Tag>& tags) {
  json out = json::array();
  for (const auto& t : tags) out.push_back({{"key", t.key}, {"value", t.value}});
  return out;
}

std::vector<Tag> tags_from(const json& array) {
  std::vector<Tag> tags;
  for (const auto& t : array) tags.push_back({t.at("key").get<std::string>(), t.at("value").get<std::string>()});
  return tags;
}

double decode_double(const json& v) {
  if (v.is_number()) return v.get<double>();
  const std::string s = v.get<std::string>();
  if (s == "NaN") return std::nan("");
  if (s == "Infinity") return INFINITY;
  if (s == "-Infinity") return -INFINITY;
  return std::stod(s);
}

// A local file named by a log_artifact operation is gone (removed by `petal gc`): there is nothing
// left to send, so the operation is skipped with a record in the spool, not retried forever.
class ArtifactGone : public PetalError {
 public:
  explicit ArtifactGone(const std::string& message) : PetalError(message) {}
};

// Any failure of a call, as the two kinds that matter: the server is away (retry later) or it
// refused. A 2xx answer whose body is not the expected MLflow JSON is a refusal.
[[noreturn]] void rethrow_as_refusal(const Client& client, const std::string& op, const std::exception& e) {
  throw MlflowError(200, "BAD_RESPONSE",
                    "MLflow server " + redact_url(client.base_url()) + " answered '" + op +
                        "' with an unexpected body (" + e.what() + "); is the tracking URI an MLflow server?");
}

void deliver_create_run(Client& client, const json& operation, std::string& run_id, Spool& spool) {
  if (!run_id.empty()) return;
  const std::string experiment_id = client.ensure_experiment(operation.at("experiment").get<std::string>());
  if (experiment_id.empty()) throw MlflowError(200, "BAD_RESPONSE", "MLflow server gave no experiment id");
  const auto existing = client.search_runs({experiment_id}, "tags.`petal.local_run_id` = '" + spool.local_run_id() + "'");
  if (!existing.runs.empty()) {
    run_id = existing.runs.front().info.run_id;
  } else {
    std::vector<Tag> tags = tags_from(operation.value("tags", json::array()));
    tags.push_back({"petal.local_run_id", spool.local_run_id()});
    run_id = client.create_run(experiment_id, operation.value("run_name", ""), operation.at("start_time").get<std::int64_t>(), tags).run_id;
  }
  if (run_id.empty()) throw MlflowError(200, "BAD_RESPONSE", "MLflow server created a run without an id");
  spool.record_run_id(run_id);
}

void deliver_log_batch(Client& client, const json& operation, const std::string& run_id) {
  std::vector<Metric> metrics;
  for (const auto& m : operation.value("metrics", json::array())) {
    metrics.push_back({m.at("key").get<std::string>(), decode_double(m.at("value")), m.at("timestamp").get<std::int64_t>(),
                       m.at("step").get<std::int64_t>()});
  }
  std::vector<Param> params;
  for (const auto& p : operation.value("params", json::array())) {
    params.push_back({p.at("key").get<std::string>(), p.at("value").get<std::string>()});
  }
  client.log_batch(run_id, metrics, params, tags_from(operation.value("tags", json::array())));
}

void deliver_log_inputs(Client& client, const json& operation, const std::string& run_id) {
  std::vector<Dataset> datasets;
  for (const auto& d : operation.at("datasets")) {
    datasets.push_back(Dataset{d.at("name"), d.at("digest"), d.at("source_type"), d.at("source"), d.value("schema", ""),
                               d.value("profile", ""), tags_from(d.value("tags", json::array()))});
  }
  client.log_inputs(run_id, datasets);
}

void deliver_log_artifact(Client& client, const json& operation, const std::string& run_id) {
  const fs::path local = operation.at("local_path").get<std::string>();
  const std::string artifact_path = operation.value("artifact_path", "");
  if (!fs::exists(local)) {
    throw ArtifactGone("artifact " + local.string() + " no longer exists (removed by petal gc?); it is skipped");
  }
  const RunInfo info = client.get_run(run_id).info;
  if (fs::is_directory(local)) client.upload_artifacts(info, local, artifact_path);
  else client.upload_artifact(info, local, artifact_path);
}

// Best effort: a producer run that is not on this server (yet) gets no link.
void deliver_link_builders(Client& client, const json& operation, const std::string& run_id) {
  const auto experiment = client.get_experiment_by_name(operation.at("experiment").get<std::string>());
  if (!experiment) return;
  std::vector<Tag> tags;
  for (const auto& [petal_run, stages] : operation.at("links").items()) {
    const auto found = client.search_runs({experiment->experiment_id}, "tags.`petal.run_id` = '" + petal_run + "'", {}, 1);
    if (found.runs.empty()) continue;
    for (const auto& stage : stages) {
      tags.push_back({"petal.stage." + stage.get<std::string>() + ".built_by_mlflow_run", found.runs.front().info.run_id});
    }
  }
  if (!tags.empty()) client.log_batch(run_id, {}, {}, tags);
}

// Marks an operation delivered (or skipped, with the reason). A failed mark only means a later
// sync sends the operation again, which MLflow takes as a duplicate: never a reason to stop.
void mark_in_spool(Spool& spool, std::int64_t seq, const std::string& skipped_because) {
  try {
    if (skipped_because.empty()) spool.mark_delivered(seq);
    else spool.mark_skipped(seq, skipped_because);
  } catch (const PetalError&) {
  }
}

}  // namespace

void deliver_operation(Client& client, const json& operation, std::string& run_id, Spool& spool) {
  const std::string op = operation.at("op").get<std::string>();
  try {
    if (op == "create_run") return deliver_create_run(client, operation, run_id, spool);
    if (run_id.empty()) throw PetalError("tracking spool " + spool.file().string() + " has no create_run before '" + op + "'");
    if (op == "log_batch") deliver_log_batch(client, operation, run_id);
    else if (op == "log_inputs") deliver_log_inputs(client, operation, run_id);
    else if (op == "log_artifact") deliver_log_artifact(client, operation, run_id);
    else if (op == "link_builders") deliver_link_builders(client, operation, run_id);
    else if (op == "update_run") client.update_run(run_id, operation.at("status").get<std::string>(), operation.at("end_time").get<std::int64_t>());
    else throw PetalError("tracking spool " + spool.file().string() + " has an unknown operation '" + op + "'");
  } catch (const json::exception& e) {
    rethrow_as_refusal(client, op, e);  // the answer's shape (or a spool record's) was not MLflow's
  }
}

std::shared_ptr<Client> make_logger_client(const std::string& tracking_uri) {
  if (tracking_uri.empty()) return nullptr;
  HttpSettings settings = HttpSettings::from_environment(tracking_uri);
  settings.abort_on_interrupt = false;
  return std::make_shared<Client>(settings);
}

// ------------------------------------------------------------------------------------------------
// RunLogger

RunLogger::RunLogger(std::shared_ptr<Client> client, const fs::path& spool_dir, const std::string& local_run_id,
                     RunLoggerOptions options)
    : client_(std::move(client)), spool_(spool_dir, local_run_id), options_(options) {
  try {
    // Taken before the spool is first written, so `petal sync` never mistakes a live run for a
    // killed one.
    owner_ = FileLock::acquire(spool_.file().string() + ".lock");
  } catch (const PetalError& e) {
    last_error_ = e.what();  // still log; only a concurrent `petal sync` could now replay early
  }
  if (!client_) state_ = State::Away;
  journal_thread_ = std::thread([this] { journal_loop(); });
  send_thread_ = std::thread([this] { send_loop(); });
}

RunLogger::~RunLogger() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  journal_wake_.notify_one();
  journal_thread_.join();  // everything queued is now in the spool
  {
    std::lock_guard<std::mutex> lock(mutex_);
    // Unsent operations stay in the spool; a request in flight is abandoned rather than waited for.
    if (operations_settled_ < operations_journaled_ && client_) client_->http().abort();
  }
  send_wake_.notify_one();
  send_thread_.join();
  if (completed_) {
    std::error_code ec;
    fs::remove(spool_.file().string() + ".lock", ec);
  }
}

void RunLogger::enqueue(Item item, bool urgent) {
  std::unique_lock<std::mutex> lock(mutex_);
  queue_.push_back(std::move(item));
  ++enqueued_;
  const bool wake = urgent || queue_.size() >= options_.batch_size;
  lock.unlock();
  if (wake) journal_wake_.notify_one();
}

void RunLogger::start_run(const std::string& experiment, const std::string& run_name, const std::vector<Tag>& tags,
                          std::int64_t start_time_ms, const std::string& server) {
  validate({}, {}, tags);
  Item item{Item::Operation};
  item.operation = {{"op", "create_run"}, {"experiment", experiment}, {"run_name", run_name},
                    {"start_time", start_time_ms}, {"tags", tags_json(tags)},
                    {"server", server}};
  enqueue(std::move(item), true);
}

void RunLogger::log_metric(const std::string& key, double value, std::int64_t step) {
  log_metric_at(key, value, step,
                std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count());
}

void RunLogger::log_metric_at(const std::string& key, double value, std::int64_t step, std::int64_t timestamp_ms) {
  // Checked here, on the caller's side: one bad key must not sink the batch it would travel in.
  if (const std::string complaint = check_key(key); !complaint.empty()) {
    throw PetalError("MLflow metric key '" + key + "' " + complaint + "; rename it");
  }
  Item item{Item::Metric};
  item.key = key;
  item.value = value;
  item.step = step;
  item.timestamp = timestamp_ms;
  values_logged_.fetch_add(1, std::memory_order_relaxed);
  enqueue(std::move(item), false);
}

void RunLogger::log_artifact(const fs::path& local_path, const std::string& artifact_path) {
  Item item{Item::Operation};
  item.operation = {{"op", "log_artifact"}, {"local_path", fs::absolute(local_path).string()},
                    {"artifact_path", artifact_path}};
  enqueue(std::move(item), false);
}

void RunLogger::log_param(const std::string& key, const std::string& value) {
  validate({}, {Param{key, value}}, {});
  Item item{Item::Param};
  item.key = key;
  item.text = value;
  enqueue(std::move(item), false);
}

void RunLogger::set_tag(const std::string& key, const std::string& value) {
  validate({}, {}, {Tag{key, value}});
  Item item{Item::Tag};
  item.key = key;
  item.text = value;
  enqueue(std::move(item), false);
}

void RunLogger::log_inputs(const std::vector<Dataset>& datasets) {
  json array = json::array();
  for (const auto& d : datasets) {
    array.push_back({{"name", d.name}, {"digest", d.digest}, {"source_type", d.source_type}, {"source", d.source},
                     {"schema", d.schema}, {"profile", d.profile}, {"tags", tags_json(d.tags)}});
  }
  Item item{Item::Operation};
  item.operation = {{"op", "log_inputs"}, {"datasets", array}};
  enqueue(std::move(item), false);
}

void RunLogger::link_builders(const std::string& experiment,
                              const std::map<std::string, std::vector<std::string>>& stages_by_petal_run) {
  if (stages_by_petal_run.empty()) return;
  Item item{Item::Operation};
  item.operation = {{"op", "link_builders"}, {"experiment", experiment}, {"links", stages_by_petal_run}};
  enqueue(std::move(item), false);
}

void RunLogger::end_run(const std::string& status) {
  Item item{Item::Operation};
  item.operation = {{"op", "update_run"}, {"status", status}, {"end_time", now_ms()}};
  enqueue(std::move(item), true);
  flush();
  std::lock_guard<std::mutex> lock(mutex_);
  if (state_ == State::Online && outbox_.empty() && operations_settled_ == operations_journaled_ && last_error_.empty()) {
    spool_.remove();
    completed_ = true;
  }
}

void RunLogger::journal() {
  std::unique_lock<std::mutex> lock(mutex_);
  const std::uint64_t target = enqueued_;
  flush_requested_ = true;
  journal_wake_.notify_one();
  progress_.wait(lock, [&] { return journaled_ >= target; });
}

void RunLogger::flush() {
  journal();  // the spool is local: waiting for the journal is always short
  std::unique_lock<std::mutex> lock(mutex_);
  const std::uint64_t operations = operations_journaled_;
  const auto settled = [&] { return operations_settled_ >= operations; };
  // The server may be slow, but each request has its deadlines (HttpClient); an interrupt shortens
  // the wait to `interrupted_wait_ms`.
  std::optional<std::chrono::steady_clock::time_point> deadline;
  while (!settled()) {
    if (!deadline && Interrupt::requested()) {
      deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(options_.interrupted_wait_ms);
    }
    if (deadline && std::chrono::steady_clock::now() >= *deadline) break;
    progress_.wait_for(lock, std::chrono::milliseconds(50));
  }
  if (settled()) return;
  lock.unlock();
  // Everything is in the spool; the request in flight is abandoned (within a second) and the
  // sender settles the rest without sending it.
  give_up(State::Away, "interrupted before the server confirmed everything; the rest is in " + spool_.file().string() +
                           " for `petal sync`");
  if (client_) client_->http().abort();
  send_wake_.notify_one();
}

std::string RunLogger::run_id() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return run_id_;
}

std::string RunLogger::last_error() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return last_error_;
}

void RunLogger::give_up(State state, const std::string& message) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (state_ != State::Online) return;  // the first reason is the one reported
  state_ = state;
  last_error_ = message;
}

// Consecutive metrics, params and tags become log_batch operations (split later by the client
// within the server's limits); other operations keep their place in the order.
std::vector<json> RunLogger::to_operations(std::vector<Item>& items) const {
  std::vector<json> operations;
  json batch;
  const auto close_batch = [&] {
    if (!batch.is_null()) operations.push_back(std::move(batch));
    batch = json();
  };
  for (auto& item : items) {
    if (item.kind == Item::Operation) {
      close_batch();
      operations.push_back(std::move(item.operation));
      continue;
    }
    if (batch.is_null()) batch = {{"op", "log_batch"}, {"metrics", json::array()}, {"params", json::array()}, {"tags", json::array()}};
    if (item.kind == Item::Metric) {
      batch["metrics"].push_back({{"key", item.key}, {"value", double_to_json(item.value)}, {"timestamp", item.timestamp},
                                  {"step", item.step}});
      if (batch["metrics"].size() >= kMaxMetricsPerBatch) close_batch();
    } else if (item.kind == Item::Param) {
      batch["params"].push_back({{"key", item.key}, {"value", item.text}});
    } else {
      batch["tags"].push_back({{"key", item.key}, {"value", item.text}});
    }
  }
  close_batch();
  return operations;
}

// Writes queued values to the spool; never touches the network, so a stuck server cannot keep
// values in memory.
void RunLogger::journal_loop() {
  for (;;) {
    std::vector<Item> items;
    bool stopping = false;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      journal_wake_.wait_for(lock, std::chrono::milliseconds(options_.flush_interval_ms),
                             [&] { return stop_ || flush_requested_ || queue_.size() >= options_.batch_size; });
      items.swap(queue_);
      queue_.reserve(std::max(items.size(), options_.batch_size));  // no regrowth on the caller's side
      flush_requested_ = false;
      stopping = stop_;
    }
    const std::uint64_t taken = items.size();
    std::vector<json> operations = to_operations(items);
    std::string error;
    if (!operations.empty()) {
      try {
        spool_.append(operations);  // numbers each operation in place
      } catch (const PetalError& e) {
        error = e.what();  // the disk failed us: still try to deliver
      }
    }
    {
      std::lock_guard<std::mutex> lock(mutex_);
      for (auto& op : operations) outbox_.push_back(std::move(op));
      operations_journaled_ += operations.size();
      journaled_ += taken;
      if (!error.empty()) last_error_ = error;
    }
    send_wake_.notify_one();
    progress_.notify_all();
    if (stopping) {
      std::lock_guard<std::mutex> lock(mutex_);
      if (queue_.empty()) break;
    }
  }
}

void RunLogger::send_loop() {
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mutex_);
      send_wake_.wait(lock, [&] { return !outbox_.empty() || (stop_ && journaled_ == enqueued_); });
      if (outbox_.empty()) return;  // stopping, and nothing left
    }
    deliver_outbox();
    progress_.notify_all();
  }
}

// Delivers the outbox in order. Each confirmed operation is marked delivered in the spool; at the
// first failure the logger gives up (away or refused) and every operation stays in the spool.
void RunLogger::deliver_outbox() {
  for (;;) {
    json op;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (outbox_.empty()) return;
      if (state_ != State::Online) {  // all of it is in the spool; `petal sync` sends it
        operations_settled_ += outbox_.size();
        outbox_.clear();
        return;
      }
      op = outbox_.front();
    }
    std::string run_id = this->run_id();
    const std::int64_t seq = op.value("seq", std::int64_t{0});
    try {
      deliver_operation(*client_, op, run_id, spool_);
      mark_in_spool(spool_, seq, "");
    } catch (const ArtifactGone& e) {
      mark_in_spool(spool_, seq, e.what());
      std::lock_guard<std::mutex> lock(mutex_);
      last_error_ = e.what();
    } catch (const std::exception& e) {
      if (server_away(e)) {
        give_up(State::Away, std::string(e.what()) + " — tracking continues offline into " + spool_.file().string() +
                                 "; run `petal sync` when the server is back");
      } else {
        give_up(State::Refused, e.what());
      }
      continue;  // settles the rest above
    }
    {
      std::lock_guard<std::mutex> lock(mutex_);
      run_id_ = run_id;
      outbox_.pop_front();
      ++operations_settled_;
    }
    progress_.notify_all();
  }
}

// ------------------------------------------------------------------------------------------------
// petal sync

namespace {

// When the spool was last written: the moment a killed petal stopped logging.
std::int64_t last_write_ms(const fs::path& file) {
  struct stat st {};
  if (::stat(file.c_str(), &st) != 0) return now_ms();
  return static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1000 + st.st_mtim.tv_nsec / 1000000;
}

// Replays one spool whose owner is gone. Throws on the first failed operation (after marking
// what was confirmed); returns true when the spool is complete and removed.
bool sync_one(Client& client, const fs::path& file, SyncReport& report) {
  Spool::State state = Spool::read(file);
  Spool spool(file.parent_path(), file.stem().string());
  const bool ended = std::any_of(state.operations.begin(), state.operations.end(),
                                 [](const json& op) { return op.value("op", "") == "update_run"; });
  if (!ended && !state.operations.empty()) {
    // Its petal was killed: journal the final status first, so a second sync sees it too.
    std::vector<json> killed = {json{{"op", "update_run"}, {"status", "KILLED"}, {"end_time", last_write_ms(file)}}};
    spool.append(killed);
    state.operations.push_back(killed.front());
    ++report.killed;
  }
  std::string run_id = state.run_id;
  for (const auto& op : state.operations) {
    const std::int64_t seq = op.value("seq", std::int64_t{0});
    if (seq <= state.delivered || state.skipped.count(seq)) continue;
    try {
      deliver_operation(client, op, run_id, spool);
      mark_in_spool(spool, seq, "");
      ++report.delivered_operations;
    } catch (const ArtifactGone& e) {
      mark_in_spool(spool, seq, e.what());
      report.warnings.push_back(file.filename().string() + ": " + e.what());
    }
  }
  spool.remove();
  std::error_code ec;
  fs::remove(file.string() + ".lock", ec);
  return true;
}

}  // namespace

SyncReport sync_spools(const std::function<Client*(const std::string& server)>& client_for, const fs::path& spool_dir) {
  SyncReport report;
  for (const fs::path& file : Spool::pending(spool_dir)) {
    FileLock lock = FileLock::try_acquire(file.string() + ".lock");
    if (!lock.held()) continue;  // its run is still going
    std::string server;
    for (const auto& op : Spool::read(file).operations) {
      if (op.value("op", "") == "create_run") server = op.value("server", "");
    }
    try {
      Client* client = client_for(server);
      if (!client) continue;
      ++report.spools;
      if (sync_one(*client, file, report)) ++report.completed;
    } catch (const std::exception& e) {
      report.errors.push_back(file.filename().string() + ": " + e.what());
      if (server_away(e)) break;  // the server is still away: try again later
    }
  }
  return report;
}

}  // namespace petal::mlflow
