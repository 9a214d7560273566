#include "pipeline/sweep/sweep_runner.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <thread>

#include "pipeline/cache/digest_cache.h"
#include "pipeline/cache/run_log.h"
#include "pipeline/cache/stage_cache.h"
#include "pipeline/dag/graph.h"
#include "pipeline/exec/executor.h"
#include "pipeline/exec/planner.h"
#include "pipeline/exec/worker_client.h"
#include "pipeline/sweep/sweep_comparison.h"
#include "pipeline/sweep/sweep_parent_run.h"
#include "pipeline/sweep/trial_attempt.h"
#include "pipeline/sweep/trial_progress.h"
#include "pipeline/util/cancel.h"
#include "pipeline/util/file_lock.h"
#include "pipeline/util/fs.h"
#include "pipeline/util/units.h"
#include "tracking/http_client.h"
#include "tracking/run_tracker.h"

namespace petal {

namespace fs = std::filesystem;
using nlohmann::json;

SweepResult run_sweep(const SweepDefinition& sweep, const Project& project, const SweepRunOptions& options) {
  const auto start = std::chrono::steady_clock::now();
  std::FILE* out = options.out;
  const StageRegistry& registry = options.registry ? *options.registry : builtin_registry();
  std::vector<std::unique_ptr<TrialWork>> trials = load_trials(sweep, registry);

  SweepResult result;
  const std::string digest = sweep_digest(sweep, trials);
  const std::string sweep_id = sweep_id_of(sweep, digest);
  const SweepFiles files = sweep_files(project, sweep_id);
  result.state_file = files.state_file;
  result.summary_dir = files.summary_dir;

  StageCache cache(project.cache_dir());
  DigestCache digests(project.digest_store());
  RunLog log(project.run_log());
  const StageSharing sharing = plan_trials(trials, cache, digests, options.verify);
  result.stage_instances = sharing.instances;
  result.distinct_stages = sharing.distinct;

  fs::create_directories(project.sweeps_dir());
  // Exclusive: no other whole-sweep run, no one-trial run and no --summarize of this sweep meanwhile
  // (they hold it shared or exclusively), since this process rewrites the whole state as it goes.
  FileLock lock = FileLock::try_acquire(files.sweep_lock);
  if (!lock.held()) {
    throw PetalError("sweep " + sweep.name + " is already running in another petal process (it holds " +
                         files.sweep_lock.string() + "); wait for it, or stop it first",
                     {}, kExitEnvironment);
  }

  std::optional<SweepState> loaded = SweepState::load(result.state_file);
  const bool resuming = loaded.has_value();
  SweepState state;
  if (loaded) {
    state = std::move(*loaded);
  } else {
    state = new_sweep_state(sweep, trials, digest, sweep_id);
  }
  check_state_matches(state, trials.size(), result.state_file);

  const int cores = std::max(1, worker_thread_budget());
  std::size_t to_run = 0;
  for (const auto& r : state.trials) to_run += is_final(r.status) ? 0 : 1;
  int jobs = options.jobs > 0 ? options.jobs : sweep.jobs > 0 ? sweep.jobs : cores;
  if (jobs > cores) {
    std::fprintf(out, "petal: %d trials at once would oversubscribe the %d cores (trials × threads ≤ cores); running %d\n",
                 jobs, cores, cores);
    jobs = cores;
  }
  jobs = std::max(1, std::min<int>(jobs, static_cast<int>(std::max<std::size_t>(1, to_run))));
  result.jobs = jobs;
  result.threads_per_trial = std::max(1, cores / jobs);
  const bool fail_fast = options.fail_fast.value_or(sweep.fail_fast);

  std::set<std::string> cached_keys;
  for (const auto& t : trials) {
    for (const auto& sp : t->plan.stages) {
      if (sp.cached()) cached_keys.insert(sp.key);
    }
  }
  std::fprintf(out, "petal sweep: %s — %zu trials (%zu finished before), %zu stage runs, %zu distinct (%zu shared), %zu cached\n",
               sweep.name.c_str(), trials.size(), trials.size() - to_run, result.stage_instances, result.distinct_stages,
               result.stage_instances - result.distinct_stages, cached_keys.size());
  if (options.list_only) {
    for (std::size_t i = 0; i < trials.size(); ++i) {
      std::fprintf(out, "  %s  %-9s %zu/%zu stages cached  %s\n", trials[i]->trial.id.c_str(), to_string(state.trials[i].status),
                   trials[i]->plan.cached_count(), trials[i]->plan.stages.size(), trials[i]->trial.label.c_str());
    }
    result.state = std::move(state);
    return result;
  }
  std::fprintf(out, "petal sweep: %d trial%s at once, %d thread%s each; state %s%s\n", jobs, jobs == 1 ? "" : "s",
               result.threads_per_trial, result.threads_per_trial == 1 ? "" : "s", result.state_file.c_str(),
               resuming ? " (resuming)" : "");
  std::fflush(out);

  // Tracking: the parent run first, so children can name it.
  std::unique_ptr<ParentRun> parent;
  TrackingTarget target;
  if (resuming && to_run == 0) {
    std::fprintf(out, "petal sweep: every trial finished before; nothing to run (the comparison is rebuilt below)\n");
  } else if (!options.no_tracking) {
    target = resolve_tracking(trials.front()->experiment, project, out);
    if (target.enabled) {
      if (!target.problem.empty()) std::fprintf(out, "petal: warning: %s\n", target.problem.c_str());
      parent = std::make_unique<ParentRun>(sweep, trials.front()->experiment, project, target, state, trials.size());
      state.parent_mlflow_run_id = parent->run_id();
      if (state.parent_mlflow_run_id.empty()) {
        std::fprintf(out, "petal: warning: the sweep's parent run is spooled (MLflow unreachable); trials are logged "
                          "without the parent link until `petal sync` and a re-run\n");
      } else {
        std::fprintf(out, "petal sweep: MLflow parent run %s at %s\n", state.parent_mlflow_run_id.c_str(),
                     redact_url(target.uri).c_str());
      }
    }
  }
  state.save(result.state_file);

  // Pruning: the rungs remember every trial seen so far, also those of earlier invocations.
  SuccessiveHalving halving(sweep.pruning);
  if (sweep.pruning.enabled) {
    for (const auto& r : state.trials) halving.observe(r.id, curve_history(r.curves, sweep.pruning.stage, sweep.pruning.metric));
    std::fprintf(out, "petal sweep: pruning %s.%s (%s) at epochs", sweep.pruning.stage.c_str(), sweep.pruning.metric.c_str(),
                 sweep.pruning.maximize ? "max" : "min");
    for (int rung : halving.rungs_up_to(1000)) std::fprintf(out, " %d", rung);
    std::fprintf(out, " (η = %d)\n", sweep.pruning.reduction_factor);
  }
  std::unique_ptr<std::atomic<bool>[]> running(new std::atomic<bool>[trials.size()]);
  std::unique_ptr<std::atomic<bool>[]> prune(new std::atomic<bool>[trials.size()]);
  std::vector<std::string> prune_reason(trials.size());
  for (std::size_t i = 0; i < trials.size(); ++i) running[i] = false, prune[i] = false;

  std::map<std::string, std::string> trial_of_run;
  for (const auto& r : state.trials) trial_of_run[r.petal_run_id] = r.id;
  std::mutex state_mutex, print_mutex;
  std::atomic<std::size_t> next{0};
  std::atomic<bool> stop_new{false};
  std::atomic<std::size_t> executed{0};
  const auto run_trial_unguarded = [&](std::size_t i) {
    TrialWork& work = *trials[i];
    TrialRecord* record = &state.trials[i];
    TrialProgress progress(out, print_mutex, work.trial.id, trial_of_run);
    const bool again = record->attempts > 0;
    {
      std::lock_guard<std::mutex> guard(state_mutex);
      record->status = TrialStatus::Running;
      ++record->attempts;
      state.save(result.state_file);
    }
    progress.say(std::string(again ? "resuming" : "start") + ": " + work.trial.label + " (" + std::to_string(work.plan.stages.size()) +
                 " stages, " + std::to_string(work.plan.cached_count()) + " cached)");
    TrialAttemptContext context;
    context.sweep = &sweep;
    context.sweep_id = state.sweep_id;
    context.project = &project;
    context.cache = &cache;
    context.log = &log;
    context.tracking = parent ? &target : nullptr;
    context.parent_mlflow_run_id = state.parent_mlflow_run_id;
    context.threads_per_stage = result.threads_per_trial;
    const auto reason = [&] {
      std::lock_guard<std::mutex> guard(state_mutex);
      return prune_reason[i];
    };
    const TrialAttempt attempt = attempt_trial(work, record->petal_run_id, context, progress,
                                               [&prune, i] { return prune[i].load(); }, reason, &running[i]);
    const RunResult& run = attempt.run;
    executed += run.count(StageStatus::Ran);

    std::lock_guard<std::mutex> guard(state_mutex);
    record_attempt(work, attempt, sweep, prune_reason[i], *record);
    if (record->status != TrialStatus::Pruned) {
      halving.observe(record->id, curve_history(record->curves, sweep.pruning.stage, sweep.pruning.metric));
    }
    state.save(result.state_file);
    if (record->status == TrialStatus::Failed && fail_fast) stop_new = true;
    progress.say(attempt_result_line(*record, sweep, run.seconds));
    say_tracking_warnings(progress, attempt.tracking_lines);
  };

  // Nothing a trial throws may end the sweep: it becomes that trial's failure.
  const auto run_trial = [&](std::size_t i) {
    try {
      run_trial_unguarded(i);
    } catch (const std::exception& e) {
      std::lock_guard<std::mutex> guard(state_mutex);
      TrialRecord& record = state.trials[i];
      record.status = TrialStatus::Failed;
      record.error = e.what();
      state.save(result.state_file);
      if (fail_fast) stop_new = true;
      std::lock_guard<std::mutex> print(print_mutex);
      std::fprintf(out, "[%s] FAILED: %s\n", record.id.c_str(), e.what());
    }
  };

  std::vector<std::thread> pool;
  for (int j = 0; j < jobs; ++j) {
    pool.emplace_back([&] {
      for (;;) {
        if (stop_new || Interrupt::requested()) return;
        const std::size_t i = next++;
        if (i >= trials.size()) return;
        if (is_final(state.trials[i].status)) continue;
        run_trial(i);
      }
    });
  }
  // The pruning monitor: each running trial's newest epoch checkpoint, four times a second.
  std::atomic<bool> pool_done{false};
  std::thread monitor;
  if (sweep.pruning.enabled) {
    monitor = std::thread([&] {
      while (!pool_done) {
        for (std::size_t i = 0; i < trials.size(); ++i) {
          if (!running[i] || prune[i]) continue;
          for (const auto& sp : trials[i]->plan.stages) {
            if (sp.node->name() != sweep.pruning.stage) continue;
            const std::string reason =
                halving.observe(trials[i]->trial.id, checkpoint_history(cache.resume_dir(sp.key), sweep.pruning.metric));
            if (reason.empty()) continue;
            {
              std::lock_guard<std::mutex> guard(state_mutex);
              prune_reason[i] = reason;
            }
            prune[i] = true;
            std::lock_guard<std::mutex> print(print_mutex);
            std::fprintf(out, "[%s] %s: stopping it\n", trials[i]->trial.id.c_str(), reason.c_str());
            std::fflush(out);
          }
        }
        for (int tick = 0; tick < 5 && !pool_done; ++tick) std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
    });
  }
  for (auto& t : pool) t.join();
  pool_done = true;
  if (monitor.joinable()) monitor.join();
  result.executed = executed;

  bool interrupted = Interrupt::requested(), failed = false, all_finished = true;
  for (const auto& r : state.trials) {
    failed = failed || r.status == TrialStatus::Failed;
    interrupted = interrupted || r.status == TrialStatus::Interrupted;
    all_finished = all_finished && is_final(r.status);
  }
  result.exit_code = interrupted ? kExitInterrupted : (failed || !all_finished) ? kExitStageFailed : kExitOk;

  // The comparison: files beside the state, artifacts and best-trial tags on the parent run.
  result.summary = write_comparison(state, sweep, swept_parameters(trials), result.summary_dir, options.charts, out);
  if (parent) {
    log_comparison(*parent, state, sweep, result.summary, result.summary_dir, result.stage_instances - result.distinct_stages);
    parent->finish(interrupted ? "KILLED" : result.exit_code == kExitOk ? "FINISHED" : "FAILED");
  }
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  result.state = std::move(state);
  return result;
}

}  // namespace petal
