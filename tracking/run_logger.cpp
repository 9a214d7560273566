#include "tracking/run_logger.h"

#include <chrono>
#include <cmath>

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

// True for failures that mean "the server is away", as opposed to "the server said no".
bool server_away(const PetalError& e) {
  if (dynamic_cast<const HttpUnreachable*>(&e)) return true;
  if (const auto* m = dynamic_cast<const MlflowError*>(&e)) return m->status() == 429 || m->status() >= 500;
  return false;
}

}  // namespace

void deliver_operation(Client& client, const json& operation, std::string& run_id, Spool& spool) {
  const std::string op = operation.at("op").get<std::string>();
  if (op == "create_run") {
    if (!run_id.empty()) return;
    const std::string experiment_id = client.ensure_experiment(operation.at("experiment").get<std::string>());
    const auto existing = client.search_runs({experiment_id}, "tags.`petal.local_run_id` = '" + spool.local_run_id() + "'");
    if (!existing.runs.empty()) {
      run_id = existing.runs.front().info.run_id;
    } else {
      std::vector<Tag> tags = tags_from(operation.value("tags", json::array()));
      tags.push_back({"petal.local_run_id", spool.local_run_id()});
      run_id = client.create_run(experiment_id, operation.value("run_name", ""), operation.at("start_time").get<std::int64_t>(), tags).run_id;
    }
    spool.record_run_id(run_id);
    return;
  }
  if (run_id.empty()) throw PetalError("tracking spool " + spool.file().string() + " has no create_run before '" + op + "'");
  if (op == "log_batch") {
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
  } else if (op == "log_inputs") {
    std::vector<Dataset> datasets;
    for (const auto& d : operation.at("datasets")) {
      datasets.push_back(Dataset{d.at("name"), d.at("digest"), d.at("source_type"), d.at("source"), d.value("schema", ""),
                                 d.value("profile", ""), tags_from(d.value("tags", json::array()))});
    }
    client.log_inputs(run_id, datasets);
  } else if (op == "log_artifact") {
    const fs::path local = operation.at("local_path").get<std::string>();
    const std::string artifact_path = operation.value("artifact_path", "");
    if (!fs::exists(local)) {
      throw PetalError("artifact " + local.string() + " no longer exists (removed by petal gc?); it is skipped");
    }
    const RunInfo info = client.get_run(run_id).info;
    if (fs::is_directory(local)) client.upload_artifacts(info, local, artifact_path);
    else client.upload_artifact(info, local, artifact_path);
  } else if (op == "update_run") {
    client.update_run(run_id, operation.at("status").get<std::string>(), operation.at("end_time").get<std::int64_t>());
  } else {
    throw PetalError("tracking spool " + spool.file().string() + " has an unknown operation '" + op + "'");
  }
}

RunLogger::RunLogger(std::shared_ptr<Client> client, const fs::path& spool_dir, const std::string& local_run_id,
                     RunLoggerOptions options)
    : client_(std::move(client)), spool_(spool_dir, local_run_id), options_(options) {
  offline_ = client_ == nullptr;
  thread_ = std::thread([this] { background(); });
}

RunLogger::~RunLogger() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  wake_.notify_one();
  thread_.join();
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
  if (wake) wake_.notify_one();
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
  // Checked here, on the caller's side: one bad key must not sink the batch it would travel in.
  if (const std::string complaint = check_key(key); !complaint.empty()) {
    throw PetalError("MLflow metric key '" + key + "' " + complaint + "; rename it");
  }
  Item item{Item::Metric};
  item.key = key;
  item.value = value;
  item.step = step;
  item.timestamp = std::chrono::duration_cast<std::chrono::milliseconds>(
                       std::chrono::system_clock::now().time_since_epoch()).count();
  values_logged_.fetch_add(1, std::memory_order_relaxed);
  enqueue(std::move(item), false);
}

void RunLogger::log_metric_at(const std::string& key, double value, std::int64_t step, std::int64_t timestamp_ms) {
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

void RunLogger::end_run(const std::string& status) {
  Item item{Item::Operation};
  item.operation = {{"op", "update_run"}, {"status", status}, {"end_time", now_ms()}};
  enqueue(std::move(item), true);
  flush();
  std::lock_guard<std::mutex> lock(mutex_);
  if (!offline_ && undelivered_.empty() && last_error_.empty()) {
    spool_.remove();
    completed_ = true;
  }
}

void RunLogger::flush() {
  std::unique_lock<std::mutex> lock(mutex_);
  const std::uint64_t target = enqueued_;
  flush_requested_ = true;
  wake_.notify_one();
  progress_.wait(lock, [&] { return processed_ >= target; });
}

std::string RunLogger::run_id() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return run_id_;
}

std::string RunLogger::last_error() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return last_error_;
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

void RunLogger::background() {
  FileLock owner;  // keeps `petal sync` off this spool while the run is live
  try {
    owner = FileLock::acquire(spool_.file().string() + ".lock");
  } catch (const PetalError& e) {
    std::lock_guard<std::mutex> lock(mutex_);
    last_error_ = e.what();  // still log; only a concurrent `petal sync` could now replay early
  }
  for (;;) {
    std::vector<Item> items;
    bool stopping = false;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait_for(lock, std::chrono::milliseconds(options_.flush_interval_ms),
                     [&] { return stop_ || flush_requested_ || queue_.size() >= options_.batch_size; });
      items.swap(queue_);
      queue_.reserve(std::max(items.size(), options_.batch_size));  // no regrowth on the caller's side
      flush_requested_ = false;
      stopping = stop_;
    }
    const std::uint64_t taken = items.size();
    std::string error;
    if (!items.empty()) {
      std::vector<json> operations = to_operations(items);
      try {
        spool_.append(operations);  // numbers each operation in place
        for (auto& op : operations) undelivered_.push_back(std::move(op));
      } catch (const PetalError& e) {
        error = e.what();  // the disk failed us: still try to deliver
        for (auto& op : operations) undelivered_.push_back(std::move(op));
      }
    }
    if (offline_) undelivered_.clear();  // it is all in the spool; `petal sync` sends it
    if (!offline_ && !undelivered_.empty()) {
      std::string run_id = this->run_id();
      std::size_t done = 0;
      try {
        for (; done < undelivered_.size(); ++done) {
          try {
            deliver_operation(*client_, undelivered_[done], run_id, spool_);
          } catch (const PetalError& e) {
            if (server_away(e)) throw;
            error = e.what();  // rejected for good (e.g. a param re-logged with another value): skip it
          }
          std::lock_guard<std::mutex> lock(mutex_);
          run_id_ = run_id;
        }
      } catch (const PetalError& e) {
        offline_ = true;
        error = std::string(e.what()) + " — tracking continues offline into " + spool_.file().string() +
                "; run `petal sync` when the server is back";
      }
      if (done > 0) {
        try {
          spool_.mark_delivered(undelivered_[done - 1].value("seq", std::int64_t{0}));
        } catch (const PetalError&) {
        }
        undelivered_.erase(undelivered_.begin(), undelivered_.begin() + static_cast<std::ptrdiff_t>(done));
      }
    }
    {
      std::lock_guard<std::mutex> lock(mutex_);
      processed_ += taken;
      if (!error.empty()) last_error_ = error;
    }
    progress_.notify_all();
    if (stopping) {
      std::lock_guard<std::mutex> lock(mutex_);
      if (queue_.empty()) break;
    }
  }
}

SyncReport sync_spools(const std::function<Client&(const std::string& server)>& client_for, const fs::path& spool_dir) {
  SyncReport report;
  for (const fs::path& file : Spool::pending(spool_dir)) {
    FileLock lock = FileLock::try_acquire(file.string() + ".lock");
    if (!lock.held()) continue;  // its run is still going
    ++report.spools;
    const Spool::State state = Spool::read(file);
    Spool spool(spool_dir, file.stem().string());
    std::string run_id = state.run_id;
    bool ended = false;
    try {
      std::string server;
      for (const auto& op : state.operations) {
        if (op.value("op", "") == "create_run") server = op.value("server", "");
      }
      Client& client = client_for(server);
      std::int64_t last = state.delivered;
      for (const auto& op : state.operations) {
        const std::int64_t seq = op.value("seq", std::int64_t{0});
        if (op.value("op", "") == "update_run") ended = true;
        if (seq <= state.delivered) continue;
        deliver_operation(client, op, run_id, spool);
        last = seq;
        ++report.delivered_operations;
      }
      if (last > state.delivered) spool.mark_delivered(last);
      if (ended) {
        spool.remove();
        std::error_code ec;
        fs::remove(file.string() + ".lock", ec);
        ++report.completed;
      }
    } catch (const PetalError& e) {
      report.errors.push_back(file.filename().string() + ": " + e.what());
      if (server_away(e)) break;  // the server is still away: try again later
    }
  }
  return report;
}

}  // namespace petal::mlflow
