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
#include "pipeline/sweep/sweep_parent_run.h"
#include "pipeline/sweep/trial_progress.h"
#include "pipeline/util/cancel.h"
#include "pipeline/util/file_lock.h"
#include "pipeline/util/fs.h"
#include "pipeline/util/sha256.h"
#include "pipeline/util/subprocess.h"
#include "pipeline/util/units.h"
#include "tracking/http_client.h"
#include "tracking/run_tracker.h"

namespace petal {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// One trial's resolved experiment, graph and plan (the graph points into the experiment, so
// neither may move).
struct TrialWork {
  Trial trial;
  Experiment experiment;
  Graph graph;
  Plan plan;
};

std::string safe_name(const std::string& name) {
  std::string out;
  for (unsigned char c : name) out += std::isalnum(c) || c == '-' || c == '_' ? static_cast<char>(c) : '_';
  return out.substr(0, 60);
}

std::vector<std::unique_ptr<TrialWork>> load_trials(const SweepDefinition& sweep, const StageRegistry& registry) {
  const Experiment base = load_experiment(sweep.experiment, registry, fixed_load_options(sweep));
  const std::vector<ParamPath> seed_keys = sweep.seed_keys.empty() ? default_seed_keys(base) : sweep.seed_keys;
  if (!sweep.seeds.empty() && seed_keys.empty()) {
    throw PetalError("repeat.seeds: the base experiment has no stage with a `seed` (other than download and split); "
                     "name the keys to set, e.g. keys = [\"split.seed\"]",
                     sweep.seeds_where);
  }
  std::vector<std::unique_ptr<TrialWork>> trials;
  for (Trial& trial : expand_trials(sweep, seed_keys)) {
    auto work = std::make_unique<TrialWork>();
    try {
      work->experiment = load_experiment(sweep.experiment, registry, trial.load_options(sweep));
    } catch (const PetalError& e) {
      // Every trial would report the same mistakes: the first trial's are enough.
      throw PetalError("trial " + trial.id + " (" + trial.label + "): " + format_error(e, false), {}, e.exit_code());
    }
    work->trial = std::move(trial);
    work->graph = Graph::build(work->experiment, registry);
    trials.push_back(std::move(work));
  }
  return trials;
}

std::string sweep_digest(const SweepDefinition& sweep, const std::vector<std::unique_ptr<TrialWork>>& trials) {
  json all = json::array();
  for (const auto& t : trials) all.push_back({{"id", t->trial.id}, {"experiment", t->experiment.to_json()}});
  return sha256_hex(json{{"name", sweep.name}, {"objective", sweep.objective_metric},
                         {"maximize", sweep.objective_maximize}, {"trials", all}}
                        .dump());
}

// Final metrics ("stage.metric") and per-epoch curves of a trial's stages, in graph order.
void collect_results(const TrialWork& work, const RunResult& result, const SweepDefinition& sweep, TrialRecord& record) {
  record.metrics = json::object();
  record.curves = json::array();
  std::vector<std::string> order;
  for (const StageNode* node : work.graph.order()) {
    const StageOutcome& o = result.outcomes[static_cast<std::size_t>(node->index)];
    if (o.status != StageStatus::Ran && o.status != StageStatus::Cached) continue;
    order.push_back(node->name());
    for (const auto& [name, value] : o.report.metrics.items()) {
      if (value.is_number()) record.metrics[node->name() + "." + name] = value;
    }
    std::map<std::string, json> series;
    std::vector<std::string> series_order;
    for (const auto& point : o.report.series) {
      if (!series.count(point.name)) series_order.push_back(point.name), series[point.name] = json::array();
      series[point.name].push_back({point.step, point.value});
    }
    for (const auto& name : series_order) record.curves.push_back({{"stage", node->name()}, {"name", name}, {"points", series[name]}});
  }
  record.objective_key = find_objective_key(sweep.objective_metric, order, record.metrics);
  record.objective = record.objective_key.empty() ? json(nullptr) : record.metrics.at(record.objective_key);
}

std::string first_error(const TrialWork& work, const RunResult& result) {
  for (const StageNode* node : work.graph.order()) {
    const StageOutcome& o = result.outcomes[static_cast<std::size_t>(node->index)];
    if (o.status == StageStatus::Failed) return node->name() + ": " + o.error;
  }
  return "";
}

void draw_charts(const json& request, const fs::path& dir, std::FILE* out) {
  try {
    const fs::path request_file = dir / "charts_request.json";
    write_file_atomically(request_file, request.dump(1));
    SubprocessSpec spec;
    spec.argv = {worker_executable("petal-data-worker").string(), "sweep-charts", request_file.string(), dir.string()};
    spec.output_file = dir / "charts.log";
    const SubprocessResult result = run_subprocess(spec, nullptr);
    if (result.signal != 0 || result.exit_code != 0) {
      std::fprintf(out, "petal: warning: the comparison charts were not drawn (%s; see %s)\n", result.describe().c_str(),
                   spec.output_file.c_str());
    }
  } catch (const PetalError& e) {
    std::fprintf(out, "petal: warning: the comparison charts were not drawn: %s\n", e.what());
  }
}

}  // namespace

SweepResult run_sweep(const SweepDefinition& sweep, const Project& project, const SweepRunOptions& options) {
  const auto start = std::chrono::steady_clock::now();
  std::FILE* out = options.out;
  const StageRegistry& registry = options.registry ? *options.registry : builtin_registry();
  std::vector<std::unique_ptr<TrialWork>> trials = load_trials(sweep, registry);

  SweepResult result;
  const std::string digest = sweep_digest(sweep, trials);
  const std::string sweep_id = safe_name(sweep.name) + "-" + digest.substr(0, 12);
  result.state_file = project.sweeps_dir() / (sweep_id + ".json");
  result.summary_dir = project.sweeps_dir() / sweep_id;

  StageCache cache(project.cache_dir());
  DigestCache digests(project.digest_store());
  RunLog log(project.run_log());
  std::map<std::string, std::size_t> key_uses;
  for (auto& t : trials) {
    t->plan = make_plan(t->graph, cache, digests, options.verify);
    for (const auto& sp : t->plan.stages) ++key_uses[sp.key];
    result.stage_instances += t->plan.stages.size();
  }
  result.distinct_stages = key_uses.size();

  fs::create_directories(project.sweeps_dir());
  FileLock lock = FileLock::try_acquire(project.sweeps_dir() / (sweep_id + ".lock"));
  if (!lock.held()) {
    throw PetalError("sweep " + sweep.name + " is already running in another petal process (it holds " +
                         (project.sweeps_dir() / (sweep_id + ".lock")).string() + "); wait for it, or stop it first",
                     {}, kExitEnvironment);
  }

  std::optional<SweepState> loaded = SweepState::load(result.state_file);
  const bool resuming = loaded.has_value();
  SweepState state;
  if (loaded) {
    state = std::move(*loaded);
  } else {
    state.sweep_id = sweep_id;
    state.name = sweep.name;
    state.digest = digest;
    state.sweep_file = fs::absolute(sweep.file).lexically_normal().string();
    state.parent_petal_run_id = "sweep-" + sweep_id;
    state.created_ms = now_ms();
    const std::string base_run = new_run_id();
    for (const auto& t : trials) {
      TrialRecord r;
      r.id = t->trial.id;
      r.label = t->trial.label;
      r.values = t->trial.values_json();
      r.petal_run_id = base_run + "-" + t->trial.id;
      state.trials.push_back(std::move(r));
    }
  }
  if (state.trials.size() != trials.size()) {
    throw PetalError("sweep state " + result.state_file.string() + " lists " + std::to_string(state.trials.size()) +
                         " trials, the sweep file expands to " + std::to_string(trials.size()) +
                         "; move the state file aside to start afresh",
                     {}, kExitEnvironment);
  }

  const int cores = std::max(1, worker_thread_budget());
  std::size_t to_run = 0;
  const auto is_final = [](TrialStatus status) { return status == TrialStatus::Finished || status == TrialStatus::Pruned; };
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
    std::unique_ptr<RunTracker> tracker;
    if (parent) {
      RunTrackerOptions tracker_options;
      tracker_options.run_name = work.trial.id + " " + work.trial.label;
      if (tracker_options.run_name.size() > 200) tracker_options.run_name = tracker_options.run_name.substr(0, 197) + "...";
      tracker_options.tags = {{"petal.sweep", sweep.name},
                              {"petal.sweep_id", state.sweep_id},
                              {"petal.trial", work.trial.id},
                              {"petal.trial.label", work.trial.label.substr(0, 5000)},
                              {"petal.trial.values", work.trial.values_json().dump().substr(0, 5000)}};
      if (!state.parent_mlflow_run_id.empty()) tracker_options.tags.push_back({"mlflow.parentRunId", state.parent_mlflow_run_id});
      tracker = std::make_unique<RunTracker>(work.experiment, work.plan, project, target, record->petal_run_id, cache,
                                             tracker_options);
    }
    ObserverList observers;
    observers.add(&progress);
    observers.add(tracker.get());
    ExecuteOptions execute_options;
    execute_options.jobs = 1;
    execute_options.run_id = record->petal_run_id;
    execute_options.experiment = work.experiment.name;
    execute_options.base_dir = fs::absolute(sweep.experiment).parent_path();
    execute_options.tracking = tracker.get();
    execute_options.stage_threads = result.threads_per_trial;
    execute_options.stop = [&prune, i] { return prune[i].load(); };
    running[i] = true;
    const RunResult run = execute(work.plan, cache, log, observers, execute_options);
    running[i] = false;
    const bool pruned = prune[i].load();
    std::vector<std::pair<int, double>> pruned_history;
    if (pruned) {
      for (const auto& sp : work.plan.stages) {
        if (sp.node->name() == sweep.pruning.stage) pruned_history = checkpoint_history(cache.resume_dir(sp.key), sweep.pruning.metric);
      }
      if (tracker) {
        std::string reason;
        {
          std::lock_guard<std::mutex> guard(state_mutex);
          reason = prune_reason[i];
        }
        tracker->logger().set_tag("petal.pruned", reason);
        for (const auto& [epoch, value] : pruned_history) {
          tracker->logger().log_metric(sweep.pruning.stage + "." + sweep.pruning.metric, value, epoch);
        }
      }
    }
    std::string tracking_lines;
    if (tracker) {
      char* buffer = nullptr;
      std::size_t size = 0;
      if (std::FILE* memory = open_memstream(&buffer, &size)) {
        tracker->finish(run, memory);
        std::fclose(memory);
        tracking_lines.assign(buffer, size);
        std::free(buffer);
      }
    }
    executed += run.count(StageStatus::Ran);

    std::lock_guard<std::mutex> guard(state_mutex);
    record->seconds = run.seconds;
    record->stages_ran = static_cast<int>(run.count(StageStatus::Ran));
    record->stages_cached = static_cast<int>(run.count(StageStatus::Cached));
    if (tracker && !tracker->logger().run_id().empty()) record->mlflow_run_id = tracker->logger().run_id();
    collect_results(work, run, sweep, *record);
    record->error = first_error(work, run);
    record->status = run.exit_code == kExitOk ? TrialStatus::Finished
                     : pruned && !Interrupt::requested() ? TrialStatus::Pruned
                     : run.exit_code == kExitInterrupted ? TrialStatus::Interrupted : TrialStatus::Failed;
    if (record->status == TrialStatus::Pruned) {
      record->error = prune_reason[i];
      json points = json::array();
      for (const auto& [epoch, value] : pruned_history) points.push_back({epoch, value});
      record->curves.push_back({{"stage", sweep.pruning.stage}, {"name", sweep.pruning.metric}, {"points", points}});
    } else {
      halving.observe(record->id, curve_history(record->curves, sweep.pruning.stage, sweep.pruning.metric));
    }
    state.save(result.state_file);
    if (record->status == TrialStatus::Failed && fail_fast) stop_new = true;
    std::string line = std::string(to_string(record->status)) + " in " + format_seconds(run.seconds);
    if (record->objective.is_number()) {
      char value[64];
      std::snprintf(value, sizeof value, "%.4f", record->objective.get<double>());
      line += ": " + record->objective_key + " = " + value;
    } else if (record->status == TrialStatus::Finished) {
      line += " (no metric '" + sweep.objective_metric + "' reported)";
    }
    if (!record->error.empty()) line += " — " + record->error;
    progress.say(line);
    for (std::size_t from = 0; from < tracking_lines.size();) {
      const std::size_t end = tracking_lines.find('\n', from);
      const std::string text = tracking_lines.substr(from, end == std::string::npos ? std::string::npos : end - from);
      if (!text.empty() && text.rfind("petal: MLflow run", 0) != 0) progress.say(text);  // warnings only
      from = end == std::string::npos ? tracking_lines.size() : end + 1;
    }
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
  std::vector<std::string> swept;
  if (!trials.empty()) {
    for (const auto& v : trials.front()->trial.values) swept.push_back(v.param.text());
  }
  result.summary = summarize(state, sweep, swept);
  fs::create_directories(result.summary_dir);
  write_file_atomically(result.summary_dir / "comparison.csv", to_csv(result.summary.table));
  write_file_atomically(result.summary_dir / "comparison.md", to_markdown(result.summary.table));
  write_file_atomically(result.summary_dir / "summary.json", result.summary.to_json(state).dump(1) + "\n");
  if (options.charts) draw_charts(chart_request(state, sweep, result.summary), result.summary_dir, out);
  if (parent) {
    auto& logger = parent->logger();
    for (const char* file : {"comparison.csv", "comparison.md", "summary.json", "objective.png", "validation_curves.png"}) {
      if (fs::exists(result.summary_dir / file)) logger.log_artifact(result.summary_dir / file, "summary");
    }
    std::size_t finished = 0, failed_count = 0, pruned_count = 0;
    for (const auto& r : state.trials) {
      finished += r.status == TrialStatus::Finished ? 1 : 0;
      failed_count += r.status == TrialStatus::Failed ? 1 : 0;
      pruned_count += r.status == TrialStatus::Pruned ? 1 : 0;
    }
    logger.log_metric("trials_finished", static_cast<double>(finished));
    logger.log_metric("trials_failed", static_cast<double>(failed_count));
    if (sweep.pruning.enabled) logger.log_metric("trials_pruned", static_cast<double>(pruned_count));
    logger.log_metric("stage_runs_shared", static_cast<double>(result.stage_instances - result.distinct_stages));
    if (result.summary.best >= 0) {
      const TrialRecord& best = state.trials[static_cast<std::size_t>(result.summary.best)];
      logger.set_tag("petal.best_trial", best.id + " " + best.label);
      if (!best.mlflow_run_id.empty()) logger.set_tag("petal.best_run_id", best.mlflow_run_id);
      logger.log_metric("best." + best.objective_key, best.objective.get<double>());
      for (const auto& [key, value] : best.metrics.items()) {
        if (value.is_number() && key != best.objective_key) logger.log_metric("best." + key, value.get<double>());
      }
    }
    parent->finish(interrupted ? "KILLED" : result.exit_code == kExitOk ? "FINISHED" : "FAILED");
  }
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  result.state = std::move(state);
  return result;
}

}  // namespace petal
