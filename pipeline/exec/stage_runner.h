#pragma once
#include <filesystem>
#include <functional>
#include <string>

#include "pipeline/cache/stage_cache.h"
#include "pipeline/dag/stage_kind.h"
#include "pipeline/exec/planner.h"

namespace petal {

enum class StageStatus { Cached, Ran, Failed, Interrupted, Skipped };
const char* to_string(StageStatus status);

struct StageOutcome {
  StageStatus status = StageStatus::Skipped;
  double seconds = 0;
  std::int64_t start_ms = 0;
  std::int64_t end_ms = 0;
  std::string error;     // Failed: the readable message
  std::string log_tail;  // Failed: the last lines of the stage's log
  StageReport report;
  std::string built_by_run;  // the run that produced the entry (this one when Ran)
  bool built_concurrently = false;  // another process committed the key while we waited for it
};

struct StageRunRequest {
  const StagePlan* plan;
  std::map<std::string, std::filesystem::path> inputs;  // upstream name -> committed out/
  std::filesystem::path base_dir;
  std::string run_id;
  std::function<bool()> cancelled;
  RunTracking* tracking = nullptr;  // handed to the stage (StageContext::tracking)
  int threads = 0;                  // StageContext::threads; 0: worker_thread_budget()
  const DataParallelLaunch* data_parallel = nullptr;  // StageContext::data_parallel
  bool verify = false;  // `run --verify`: the re-check under the lock re-hashes too
};

// Builds one stage's entry: takes the key's lock, re-checks the cache (another process may have
// built it meanwhile; with `verify` the re-check re-hashes, so a damaged entry is rebuilt, never
// taken for a concurrent build), runs the implementation into a temp folder and commits it. Exceptions from
// the implementation become a Failed outcome with its message; nothing is committed unless the
// implementation returned normally and no cancellation was requested.
StageOutcome run_stage(const StageRunRequest& request, const StageCache& cache);

}  // namespace petal
