#include "pipeline/exec/worker_client.h"

#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <atomic>
#include <thread>
#include <vector>

#include "pipeline/exec/data_parallel_launch.h"
#include "pipeline/util/error.h"
#include "pipeline/util/fs.h"
#include "pipeline/util/net.h"
#include "pipeline/util/subprocess.h"
#include "stages/worker/worker_protocol.h"

namespace petal {

using nlohmann::json;

// One folder up too: tests run from build/tests/, workers live in build/.
fs::path worker_executable(const std::string& worker_name) {
  if (const char* path = std::getenv("PETAL_WORKER"); path && *path) return path;
  std::error_code ec;
  if (const char* dir = std::getenv("PETAL_WORKER_DIR"); dir && *dir) return fs::path(dir) / worker_name;
  const fs::path self = fs::read_symlink("/proc/self/exe", ec);
  for (const fs::path& dir : {self.parent_path(), self.parent_path().parent_path()}) {
    if (!ec && fs::exists(dir / worker_name)) return dir / worker_name;
  }
  throw PetalError(worker_name + " was not found beside " + self.string() +
                       "; build it (scripts/setup.sh installs what it needs) or set PETAL_WORKER_DIR",
                   {}, kExitEnvironment);
}


int worker_thread_budget() {
  if (const char* text = std::getenv("PETAL_THREADS"); text && *text) {
    const int n = std::atoi(text);
    if (n > 0) return n;
  }
  return static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
}

namespace {

WorkerRequest make_request(const StageContext& ctx, const std::string& kind) {
  WorkerRequest request;
  request.kind = kind;
  request.stage = ctx.stage_name;
  request.params = ctx.params;
  request.inputs = ctx.inputs;
  request.output_dir = ctx.output_dir;
  request.base_dir = ctx.base_dir;
  request.report_file = ctx.log_file.parent_path() / "worker-report.json";
  request.threads = std::max(1, ctx.threads);
  request.resume_dir = ctx.resume_dir;
  return request;
}

fs::path write_request(const WorkerRequest& request, const fs::path& file) {
  std::ofstream(file) << request.to_json().dump(1) << "\n";
  return file;
}

// The worker's report; PetalError with its message when it failed.
json read_report(const WorkerRequest& request, const SubprocessResult& result, const std::string& who) {
  json report;
  try {
    report = json::parse(read_text_file(request.report_file));
  } catch (const std::exception&) {
    throw PetalError(who + " ended (" + result.describe() + ") without a report; see the stage log", {},
                     kExitStageFailed);
  }
  if (report.contains("error")) throw PetalError(report["error"].get<std::string>(), {}, kExitStageFailed);
  if (result.exit_code != 0 || result.signal != 0) {
    throw PetalError(who + " ended with " + result.describe(), {}, kExitStageFailed);
  }
  return report;
}

void merge_report(StageContext& ctx, const json& report) {
  const StageReport worker_report = StageReport::from_json(report);
  for (const auto& [name, value] : worker_report.metrics.items()) ctx.report.metrics[name] = value;
  for (const auto& note : worker_report.notes) ctx.report.note(note);
  for (const auto& point : worker_report.series) ctx.report.series.push_back(point);
  for (const auto& artifact : worker_report.artifacts) ctx.report.artifact(artifact);
}

// "\n  " before each line: a rank's log lines inside an error message.
std::string indented(const std::string& lines) {
  std::string out;
  for (std::size_t start = 0; start < lines.size();) {
    const std::size_t end = lines.find('\n', start);
    out += "\n  " + lines.substr(start, end - start);
    start = end == std::string::npos ? lines.size() : end + 1;
  }
  return out;
}

void run_data_parallel(StageContext& ctx, const std::string& kind, const std::string& worker_name) {
  const DataParallelLaunch& launch = *ctx.data_parallel;
  const int local = launch.nproc;
  const int port = launch.master_port ? launch.master_port : free_loopback_port();
  const fs::path scratch = ctx.log_file.parent_path();
  const fs::path executable = worker_executable(worker_name);

  struct Rank {
    WorkerRequest request;
    SubprocessSpec spec;
    SubprocessResult result;
  };
  std::vector<Rank> ranks(static_cast<std::size_t>(local));
  for (int r = 0; r < local; ++r) {
    Rank& rank = ranks[static_cast<std::size_t>(r)];
    rank.request = make_request(ctx, kind);
    // The host's cores are shared by its ranks.
    rank.request.threads = std::max(1, ctx.threads / local);
    fs::path log = ctx.log_file;
    if (r > 0) {
      const fs::path dir = scratch / ("rank-" + std::to_string(r));
      fs::create_directories(dir / "out");
      rank.request.output_dir = dir / "out";
      rank.request.report_file = dir / "worker-report.json";
      log = dir / "worker.log";
    }
    const fs::path request_file =
        write_request(rank.request, r == 0 ? scratch / "worker-request.json" : scratch / ("rank-" + std::to_string(r)) / "worker-request.json");
    rank.spec.argv = {executable.string(), "run-stage", request_file.string()};
    rank.spec.working_dir = ctx.base_dir;
    rank.spec.output_file = log;
    rank.spec.extra_env = launch.rank_environment(r, port);
  }
  {
    std::ofstream(ctx.log_file, std::ios::app)
        << "data-parallel: " << local << " local processes of " << launch.world_size() << " (host "
        << launch.node_rank << " of " << launch.nnodes << "), rendezvous " << launch.master_addr << ":" << port
        << "; other ranks log to " << (scratch / "rank-N" / "worker.log").string() << "\n";
  }

  // A failed rank stops its peers at once: they would otherwise wait in a collective until its timeout.
  std::atomic<bool> peer_failed{false};
  const auto should_stop = [&] { return peer_failed.load() || (ctx.cancelled && ctx.cancelled()); };
  std::vector<std::thread> threads;
  for (Rank& rank : ranks) {
    threads.emplace_back([&rank, &should_stop, &peer_failed] {
      rank.result = run_subprocess(rank.spec, should_stop);
      if (!rank.result.cancelled && (rank.result.exit_code != 0 || rank.result.signal != 0)) peer_failed = true;
    });
  }
  for (auto& t : threads) t.join();
  if (ctx.cancelled && ctx.cancelled()) throw StageCancelled();

  // The rank that failed by itself (not one we stopped) explains the failure.
  for (int r = 0; r < local; ++r) {
    const Rank& rank = ranks[static_cast<std::size_t>(r)];
    if (rank.result.cancelled) continue;
    const std::string who = "rank " + rank.spec.extra_env.at("RANK") + " (petal-worker)";
    try {
      const json report = read_report(rank.request, rank.result, who);
      if (r == 0 && !peer_failed) merge_report(ctx, report);
    } catch (const PetalError& e) {
      const std::string where = r == 0 ? std::string() : "\n" + who + " log " + rank.spec.output_file.string() + ":" +
                                                             indented(last_lines_of(rank.spec.output_file, 8));
      throw PetalError(who + ": " + e.what() + where, {}, kExitStageFailed);
    }
  }
  if (peer_failed) throw PetalError("a data-parallel rank failed; see the stage log", {}, kExitStageFailed);
  // The other ranks' copies of the outputs are identical to the first's; only the log is worth keeping.
  for (int r = 1; r < local; ++r) {
    const fs::path dir = scratch / ("rank-" + std::to_string(r));
    remove_tree_quietly(dir / "out");
  }
}

}  // namespace

void run_in_worker(StageContext& ctx, const std::string& kind, const std::string& worker_name,
                   WorkerParallelism parallelism) {
  if (parallelism == WorkerParallelism::DataParallel && ctx.data_parallel && ctx.data_parallel->active()) {
    run_data_parallel(ctx, kind, worker_name);
    return;
  }
  const WorkerRequest request = make_request(ctx, kind);
  const fs::path request_file = write_request(request, ctx.log_file.parent_path() / "worker-request.json");

  SubprocessSpec spec;
  spec.argv = {worker_executable(worker_name).string(), "run-stage", request_file.string()};
  spec.working_dir = ctx.base_dir;
  spec.output_file = ctx.log_file;
  // One process: rendezvous variables inherited from a surrounding launcher must not make it wait for peers.
  spec.extra_env = {{"WORLD_SIZE", "1"}, {"RANK", "0"}, {"LOCAL_RANK", "0"}};
  const SubprocessResult result = run_subprocess(spec, ctx.cancelled);
  if (result.cancelled) throw StageCancelled();
  merge_report(ctx, read_report(request, result, "the worker"));
}

}  // namespace petal
