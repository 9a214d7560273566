#pragma once
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "pipeline/cache/run_log.h"
#include "pipeline/exec/planner.h"
#include "pipeline/exec/stage_runner.h"

namespace petal {

struct ExecuteOptions {
  int jobs = 1;             // stages run at once
  bool keep_going = false;  // after a failure, still run stages that do not depend on it
  std::string run_id;
  std::string experiment;   // for the run log
  std::filesystem::path base_dir;
  RunTracking* tracking = nullptr;  // the run's MLflow tracking, for stages that need it (register)
  int stage_threads = 0;  // each stage's CPU budget; 0: worker_thread_budget() (a sweep divides it)
  // Stops this run like Ctrl-C stops every run (running stages are cancelled, nothing partial is
  // committed) when it turns true: a sweep prunes one trial this way.
  std::function<bool()> stop;
  const DataParallelLaunch* data_parallel = nullptr;  // `petal run --nproc/--nnodes`; null: one process
  bool verify = false;  // `petal run --verify`: every lookup re-hashes, the one under the lock too
};

// Observes a run; all calls come from the executor's own thread, in a consistent order.
class ExecutionObserver {
 public:
  virtual ~ExecutionObserver() = default;
  virtual void on_stage_start(const StagePlan&) {}
  virtual void on_stage_end(const StagePlan&, const StageOutcome&) {}
  virtual void on_heartbeat(const StagePlan&, double /*seconds_running*/) {}
};

// Forwards every event to several observers (progress on the terminal, MLflow tracking).
class ObserverList : public ExecutionObserver {
 public:
  void add(ExecutionObserver* observer) {
    if (observer) observers_.push_back(observer);
  }
  void on_stage_start(const StagePlan& p) override {
    for (auto* o : observers_) o->on_stage_start(p);
  }
  void on_stage_end(const StagePlan& p, const StageOutcome& outcome) override {
    for (auto* o : observers_) o->on_stage_end(p, outcome);
  }
  void on_heartbeat(const StagePlan& p, double seconds) override {
    for (auto* o : observers_) o->on_heartbeat(p, seconds);
  }

 private:
  std::vector<ExecutionObserver*> observers_;
};

struct RunResult {
  std::vector<StageOutcome> outcomes;  // by graph index
  double seconds = 0;
  int exit_code = 0;  // 0, kExitStageFailed or kExitInterrupted
  std::size_t count(StageStatus status) const;
};

// Runs every stage that is not cached, in dependency order, up to `jobs` at a time. Cached stages
// are reported first without being touched beyond an LRU mark. A failure stops new stages from
// starting (unless keep_going) while running ones finish; an interruption (Interrupt::requested)
// stops the running ones and commits nothing half-done. Each outcome is appended to the run log.
RunResult execute(const Plan& plan, const StageCache& cache, RunLog& log, ExecutionObserver& observer,
                  const ExecuteOptions& options);

}  // namespace petal
