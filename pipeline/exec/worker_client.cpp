#include "pipeline/exec/worker_client.h"

#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <thread>

#include "pipeline/util/error.h"
#include "pipeline/util/fs.h"
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

void run_in_worker(StageContext& ctx, const std::string& kind, const std::string& worker_name) {
  const fs::path scratch = ctx.log_file.parent_path();
  WorkerRequest request;
  request.kind = kind;
  request.stage = ctx.stage_name;
  request.params = ctx.params;
  request.inputs = ctx.inputs;
  request.output_dir = ctx.output_dir;
  request.base_dir = ctx.base_dir;
  request.report_file = scratch / "worker-report.json";
  request.threads = std::max(1, ctx.threads);
  request.resume_dir = ctx.resume_dir;
  const fs::path request_file = scratch / "worker-request.json";
  std::ofstream(request_file) << request.to_json().dump(1) << "\n";

  SubprocessSpec spec;
  spec.argv = {worker_executable(worker_name).string(), "run-stage", request_file.string()};
  spec.working_dir = ctx.base_dir;
  spec.output_file = ctx.log_file;
  const SubprocessResult result = run_subprocess(spec, ctx.cancelled);
  if (result.cancelled) throw StageCancelled();

  json report;
  try {
    report = json::parse(read_text_file(request.report_file));
  } catch (const std::exception&) {
    throw PetalError("the worker ended (" + result.describe() + ") without a report; see the stage log", {},
                     kExitStageFailed);
  }
  if (report.contains("error")) {
    throw PetalError(report["error"].get<std::string>(), {}, kExitStageFailed);
  }
  if (result.exit_code != 0 || result.signal != 0) {
    throw PetalError("the worker ended with " + result.describe(), {}, kExitStageFailed);
  }
  const StageReport worker_report = StageReport::from_json(report);
  for (const auto& [name, value] : worker_report.metrics.items()) ctx.report.metrics[name] = value;
  for (const auto& note : worker_report.notes) ctx.report.note(note);
  for (const auto& point : worker_report.series) ctx.report.series.push_back(point);
  for (const auto& artifact : worker_report.artifacts) ctx.report.artifact(artifact);
}

}  // namespace petal
