#include "pipeline/exec/executor.h"

#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>

#include "pipeline/util/cancel.h"
#include "pipeline/util/error.h"
#include "pipeline/util/fs.h"

namespace petal {

std::size_t RunResult::count(StageStatus status) const {
  std::size_t n = 0;
  for (const auto& o : outcomes) n += o.status == status ? 1 : 0;
  return n;
}

namespace {

RunRecord record_of(const StagePlan& plan, const StageOutcome& outcome, const ExecuteOptions& options) {
  RunRecord r;
  r.run_id = options.run_id;
  r.experiment = options.experiment;
  r.stage = plan.node->name();
  r.key = plan.key;
  r.status = to_string(outcome.status);
  r.start_ms = outcome.start_ms;
  r.end_ms = outcome.end_ms;
  r.error = outcome.error;
  return r;
}

enum class NodeState { Waiting, Running, Done };

}  // namespace

RunResult execute(const Plan& plan, const StageCache& cache, RunLog& log, ExecutionObserver& observer,
                  const ExecuteOptions& options) {
  const auto start = std::chrono::steady_clock::now();
  const std::size_t n = plan.stages.size();
  RunResult result;
  result.outcomes.resize(n);
  std::vector<NodeState> state(n, NodeState::Waiting);

  // Cached stages are done before anything runs.
  std::vector<RunRecord> cached_records;
  for (std::size_t i = 0; i < n; ++i) {
    const StagePlan& sp = plan.stages[i];
    if (!sp.cached()) continue;
    StageOutcome& o = result.outcomes[i];
    o.status = StageStatus::Cached;
    o.start_ms = o.end_ms = now_ms();
    o.report = StageReport::from_json(sp.lookup.manifest->report);
    o.built_by_run = sp.lookup.manifest->run_id;
    state[i] = NodeState::Done;
    cache.touch(sp.key);
    observer.on_stage_end(sp, o);
    cached_records.push_back(record_of(sp, o, options));
  }
  log.append(cached_records, /*durable=*/false);

  std::mutex mutex;
  std::condition_variable finished_cv;
  std::deque<std::size_t> finished;
  std::vector<std::thread> threads;
  std::vector<std::chrono::steady_clock::time_point> started_at(n);
  std::vector<double> last_heartbeat(n, 0);
  std::atomic<bool> stop_running{false};
  bool stop_launching = false;
  int running = 0;
  const auto stop_requested = [&options] { return Interrupt::requested() || (options.stop && options.stop()); };
  const auto cancelled = [&stop_running, &stop_requested] { return stop_running.load() || stop_requested(); };

  const auto succeeded = [&](std::size_t i) {
    return state[i] == NodeState::Done &&
           (result.outcomes[i].status == StageStatus::Ran || result.outcomes[i].status == StageStatus::Cached);
  };

  for (;;) {
    if (stop_requested()) {
      stop_launching = true;
      stop_running = true;
    }
    // Launch every ready stage, in graph order, while slots are free.
    for (std::size_t i = 0; i < n && !stop_launching && running < std::max(1, options.jobs); ++i) {
      if (state[i] != NodeState::Waiting) continue;
      const StagePlan& sp = plan.stages[i];
      bool ready = true;
      for (const StageNode* up : sp.node->needs) ready = ready && succeeded(static_cast<std::size_t>(up->index));
      if (!ready) continue;
      StageRunRequest request{&sp,       {},        options.base_dir, options.run_id, cancelled, options.tracking,
                              options.stage_threads, options.data_parallel, options.verify};
      for (const StageNode* up : sp.node->needs) request.inputs[up->name()] = cache.out_dir(plan.stages[up->index].key);
      state[i] = NodeState::Running;
      ++running;
      started_at[i] = std::chrono::steady_clock::now();
      observer.on_stage_start(sp);
      threads.emplace_back([&, i, request] {
        StageOutcome outcome = run_stage(request, cache);
        std::lock_guard<std::mutex> lock(mutex);
        result.outcomes[i] = std::move(outcome);
        finished.push_back(i);
        finished_cv.notify_one();
      });
    }
    if (running == 0) break;

    std::unique_lock<std::mutex> lock(mutex);
    finished_cv.wait_for(lock, std::chrono::milliseconds(50), [&] { return !finished.empty(); });
    std::deque<std::size_t> done;
    done.swap(finished);
    lock.unlock();
    for (std::size_t i : done) {
      state[i] = NodeState::Done;
      --running;
      const StagePlan& sp = plan.stages[i];
      const StageOutcome& o = result.outcomes[i];
      // Observers first: the tracker journals the stage's results, so a stage the run log calls
      // done always has its values in the run's tracking spool, whenever a kill lands.
      observer.on_stage_end(sp, o);
      log.append({record_of(sp, o, options)}, /*durable=*/o.status == StageStatus::Ran);
      if (o.status == StageStatus::Failed && !options.keep_going) stop_launching = true;
      if (o.status == StageStatus::Interrupted) stop_launching = true;
    }
    const auto now = std::chrono::steady_clock::now();
    for (std::size_t i = 0; i < n; ++i) {
      if (state[i] != NodeState::Running) continue;
      const double elapsed = std::chrono::duration<double>(now - started_at[i]).count();
      if (elapsed - last_heartbeat[i] >= 30) {
        last_heartbeat[i] = elapsed;
        observer.on_heartbeat(plan.stages[i], elapsed);
      }
    }
  }
  for (auto& t : threads) t.join();

  bool failed = false, interrupted = stop_requested();
  for (std::size_t i = 0; i < n; ++i) {
    if (state[i] == NodeState::Waiting) {
      result.outcomes[i].status = StageStatus::Skipped;
      observer.on_stage_end(plan.stages[i], result.outcomes[i]);
    }
    failed = failed || result.outcomes[i].status == StageStatus::Failed;
    interrupted = interrupted || result.outcomes[i].status == StageStatus::Interrupted;
  }
  result.exit_code = interrupted ? kExitInterrupted : failed ? kExitStageFailed : kExitOk;
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return result;
}

}  // namespace petal
