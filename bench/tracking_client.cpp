// petal_bench_tracking: the petal side of the tracking-client benchmark (bench/tracking_client.py
// drives it; see bench/README.md). Each subcommand does one thing and prints one JSON line:
//
//   petal_bench_tracking server-start DIR      starts (or reuses) LocalMlflowServer(DIR); {"url": ...}
//   petal_bench_tracking server-stop DIR       stops it
//   petal_bench_tracking run-logger OPTIONS    RunLogger (async, batched): log KEYS x STEPS values, flush()
//   petal_bench_tracking log-batch OPTIONS     Client::log_batch, synchronous, BATCH values per call
//
// OPTIONS: --uri URL --experiment NAME --run-name NAME --keys K --steps S
//          [--spool DIR] [--batch N (log-batch: values per call; run-logger: RunLoggerOptions::batch_size)]
//          [--flush-interval-ms MS]
//
// Values are logged step-major like a training loop: for step s, for key k: key "bench.k<k>",
// value k + s / 1000.0 + 0.5 (bench/tracking_client.py checks every value it reads back).
// The run is created before the clock starts; the clock runs from the first log call until every
// value is confirmed delivered (RunLogger: flush() returned; log_batch: the last call returned).
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <exception>
#include <iostream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <type_traits>
#include <vector>

#include "pipeline/util/error.h"
#include "pipeline/util/fs.h"
#include "tracking/local_server.h"
#include "tracking/mlflow_client.h"
#include "tracking/run_logger.h"

namespace {

using Clock = std::chrono::steady_clock;
using nlohmann::json;
namespace mlflow = petal::mlflow;

double ms_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

std::string key_name(int k) { return "bench.k" + std::to_string(k); }
double value_of(int k, int step) { return k + step / 1000.0 + 0.5; }

struct Options {
  std::string uri;
  std::string experiment = "petal-bench";
  std::string run_name = "petal";
  std::string spool;
  int keys = 10;
  int steps = 1000;
  int batch = 1000;
  int flush_interval_ms = 1000;
};

Options parse_options(int argc, char** argv, int first) {
  Options o;
  std::map<std::string, std::string> values;
  for (int i = first; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag.rfind("--", 0) != 0 || i + 1 >= argc) throw petal::PetalError("bad argument '" + flag + "'");
    values[flag] = argv[++i];
  }
  const auto take = [&](const char* flag, auto& out) {
    const auto it = values.find(flag);
    if (it == values.end()) return;
    if constexpr (std::is_same_v<std::decay_t<decltype(out)>, int>) {
      out = std::stoi(it->second);
    } else {
      out = it->second;
    }
    values.erase(it);
  };
  take("--uri", o.uri);
  take("--experiment", o.experiment);
  take("--run-name", o.run_name);
  take("--spool", o.spool);
  take("--keys", o.keys);
  take("--steps", o.steps);
  take("--batch", o.batch);
  take("--flush-interval-ms", o.flush_interval_ms);
  if (!values.empty()) throw petal::PetalError("unknown option '" + values.begin()->first + "'");
  if (o.uri.empty()) throw petal::PetalError("--uri is required");
  if (o.keys <= 0 || o.steps <= 0 || o.batch <= 0) throw petal::PetalError("--keys, --steps and --batch must be > 0");
  return o;
}

// RunLogger: start_run and a flush() (the run exists on the server) before the clock starts; then
// KEYS x STEPS log_metric calls, each timed on this thread, then flush().
int bench_run_logger(const Options& o) {
  if (o.spool.empty()) throw petal::PetalError("run-logger needs --spool DIR");
  auto client = std::make_shared<mlflow::Client>(o.uri);
  mlflow::RunLoggerOptions options;
  options.batch_size = static_cast<std::size_t>(o.batch);
  options.flush_interval_ms = o.flush_interval_ms;
  const std::string local_id = "bench-" + std::to_string(petal::now_ms()) + "-" + o.run_name;
  mlflow::RunLogger logger(client, o.spool, local_id, options);
  logger.start_run(o.experiment, o.run_name, {{"petal.bench", "tracking_client"}}, petal::now_ms());
  logger.flush();
  if (logger.run_id().empty()) throw petal::PetalError("RunLogger created no run: " + logger.last_error());

  std::vector<std::string> keys;
  for (int k = 0; k < o.keys; ++k) keys.push_back(key_name(k));
  double inside_ns = 0;
  std::int64_t max_ns = 0;
  const Clock::time_point start = Clock::now();
  for (int s = 0; s < o.steps; ++s) {
    for (int k = 0; k < o.keys; ++k) {
      const Clock::time_point a = Clock::now();
      logger.log_metric(keys[static_cast<std::size_t>(k)], value_of(k, s), s);
      const Clock::time_point b = Clock::now();
      const std::int64_t ns = std::chrono::duration_cast<std::chrono::nanoseconds>(b - a).count();
      inside_ns += static_cast<double>(ns);
      max_ns = std::max(max_ns, ns);
    }
  }
  const Clock::time_point logged = Clock::now();
  logger.flush();
  const Clock::time_point delivered = Clock::now();

  const std::string error = logger.last_error();
  const bool offline = logger.offline();
  const std::string run_id = logger.run_id();
  logger.end_run("FINISHED");
  const std::int64_t calls = static_cast<std::int64_t>(o.keys) * o.steps;
  json out = {{"variant", "run-logger"},
              {"run_id", run_id},
              {"values", calls},
              {"wall_ms", ms_between(start, delivered)},
              {"caller_loop_ms", ms_between(start, logged)},
              {"per_call_us", inside_ns / 1000.0 / static_cast<double>(calls)},
              {"max_call_us", static_cast<double>(max_ns) / 1000.0},
              {"offline", offline},
              {"error", error},
              {"spool_removed", !petal::fs::exists(logger.spool_file())}};
  std::cout << out.dump() << std::endl;
  return error.empty() && !offline ? 0 : 1;
}

// Client::log_batch, synchronous: the run is created first; the clock covers building each batch
// and sending it, for all batches.
int bench_log_batch(const Options& o) {
  mlflow::Client client(o.uri);
  const std::string experiment_id = client.ensure_experiment(o.experiment);
  const std::string run_id =
      client.create_run(experiment_id, o.run_name, petal::now_ms(), {{"petal.bench", "tracking_client"}}).run_id;

  std::vector<std::string> keys;
  for (int k = 0; k < o.keys; ++k) keys.push_back(key_name(k));
  const std::size_t batch_size = static_cast<std::size_t>(o.batch);
  std::vector<mlflow::Metric> batch;
  batch.reserve(batch_size);
  double inside_ns = 0;
  std::int64_t max_ns = 0;
  std::int64_t calls = 0;
  const auto send = [&] {
    const Clock::time_point a = Clock::now();
    client.log_batch(run_id, batch);
    const std::int64_t ns = std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - a).count();
    inside_ns += static_cast<double>(ns);
    max_ns = std::max(max_ns, ns);
    ++calls;
    batch.clear();
  };
  const Clock::time_point start = Clock::now();
  for (int s = 0; s < o.steps; ++s) {
    for (int k = 0; k < o.keys; ++k) {
      batch.push_back({keys[static_cast<std::size_t>(k)], value_of(k, s), petal::now_ms(), s});
      if (batch.size() >= batch_size) send();
    }
  }
  if (!batch.empty()) send();
  const Clock::time_point delivered = Clock::now();
  client.update_run(run_id, "FINISHED", petal::now_ms());

  const std::int64_t values = static_cast<std::int64_t>(o.keys) * o.steps;
  json out = {{"variant", "log-batch"},
              {"run_id", run_id},
              {"values", values},
              {"wall_ms", ms_between(start, delivered)},
              {"caller_loop_ms", ms_between(start, delivered)},
              // Synchronous: the caller's thread carries everything, spread over the values.
              {"per_call_us", ms_between(start, delivered) * 1000.0 / static_cast<double>(values)},
              {"batch_calls", calls},
              {"per_batch_call_ms", inside_ns / 1e6 / static_cast<double>(calls)},
              {"max_call_us", static_cast<double>(max_ns) / 1000.0},
              {"offline", false},
              {"error", ""}};
  std::cout << out.dump() << std::endl;
  return 0;
}

int usage() {
  std::cerr << "usage: petal_bench_tracking server-start DIR | server-stop DIR |\n"
               "       petal_bench_tracking run-logger|log-batch --uri URL [--experiment NAME] [--run-name NAME]\n"
               "                            [--keys 10] [--steps 1000] [--batch 1000] [--spool DIR]\n"
               "                            [--flush-interval-ms 1000]\n"
               "Run by bench/tracking_client.py; see bench/README.md.\n";
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return usage();
  const std::string command = argv[1];
  try {
    if (command == "server-start" && argc == 3) {
      const std::string url = petal::LocalMlflowServer(argv[2]).ensure_running();
      std::cout << json{{"url", url}}.dump() << std::endl;
      return 0;
    }
    if (command == "server-stop" && argc == 3) {
      petal::LocalMlflowServer(argv[2]).stop();
      return 0;
    }
    if (command == "run-logger") return bench_run_logger(parse_options(argc, argv, 2));
    if (command == "log-batch") return bench_log_batch(parse_options(argc, argv, 2));
  } catch (const std::exception& e) {
    std::cerr << "petal_bench_tracking: error: " << e.what() << std::endl;
    return 2;
  }
  return usage();
}
