#include "pipeline/exec/stage_runner.h"

#include <chrono>
#include <deque>
#include <fstream>

#include "pipeline/exec/worker_client.h"
#include "pipeline/util/error.h"
#include "pipeline/util/fs.h"

namespace petal {

const char* to_string(StageStatus status) {
  switch (status) {
    case StageStatus::Cached: return "cached";
    case StageStatus::Ran: return "ran";
    case StageStatus::Failed: return "failed";
    case StageStatus::Interrupted: return "interrupted";
    case StageStatus::Skipped: return "skipped";
  }
  return "?";
}

namespace {

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

StageOutcome run_stage(const StageRunRequest& request, const StageCache& cache) {
  const StagePlan& plan = *request.plan;
  StageOutcome outcome;
  outcome.start_ms = now_ms();
  const auto start = std::chrono::steady_clock::now();

  std::unique_ptr<StageCache::Build> build = cache.begin(plan.key, request.cancelled);
  if (!build) {
    outcome.status = StageStatus::Interrupted;
    outcome.end_ms = now_ms();
    return outcome;
  }
  const CacheLookup again = cache.lookup(plan.key, request.verify);
  if (again.state == EntryState::Committed) {
    outcome.status = StageStatus::Cached;
    outcome.built_concurrently = true;
    outcome.report = StageReport::from_json(again.manifest->report);
    outcome.built_by_run = again.manifest->run_id;
    outcome.end_ms = now_ms();
    outcome.seconds = seconds_since(start);
    return outcome;
  }
  if (again.state == EntryState::Damaged) cache.discard(plan.key);

  const nlohmann::json params = plan.node->config->params_json();
  StageContext context{plan.node->name(), params,          request.inputs,     build->out_dir(),
                       build->log_file(), request.base_dir, request.cancelled, outcome.report};
  context.threads = request.threads > 0 ? request.threads : worker_thread_budget();
  context.resume_dir = cache.resume_dir(plan.key);
  context.tracking = request.tracking;
  context.data_parallel = request.data_parallel;
  try {
    plan.node->kind->run(context);
    if (request.cancelled && request.cancelled()) throw StageCancelled();
    Manifest manifest;
    manifest.stage = plan.node->name();
    manifest.run_id = request.run_id;
    manifest.ingredients = plan.ingredients;
    manifest.report = outcome.report.to_json();
    manifest.created_ms = now_ms();
    manifest.seconds = seconds_since(start);
    build->commit(std::move(manifest));
    cache.remove_resume_dir(plan.key);
    outcome.status = StageStatus::Ran;
    outcome.built_by_run = request.run_id;
  } catch (const StageCancelled&) {
    outcome.status = StageStatus::Interrupted;
  } catch (const PetalError& e) {
    outcome.status = StageStatus::Failed;
    outcome.error = e.what();
  } catch (const std::exception& e) {
    outcome.status = StageStatus::Failed;
    outcome.error = std::string("internal error: ") + e.what();
  }
  if (outcome.status == StageStatus::Failed) outcome.log_tail = last_lines_of(build->log_file(), 20);
  outcome.end_ms = now_ms();
  outcome.seconds = seconds_since(start);
  return outcome;
}

}  // namespace petal
