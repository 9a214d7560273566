#pragma once
// The scheduled-retraining loop, independent of how a run is checked and started (the CLI plugs
// in planning and `petal run` subprocesses; tests plug in fakes). One trigger:
//   1. take the schedule's lock: if another trigger or scheduler holds it, skip (no overlap);
//   2. ask whether anything changed (planning: the data source's digest, the remote's validators);
//      nothing changed -> done, in milliseconds, and no run is started or logged;
//   3. run; a failed run is retried after backoff, backoff * 2, ... (at most max_backoff), and
//      after the last attempt the trigger is reported failed (the runs themselves are FAILED in MLflow).
#include <cstdio>
#include <ctime>
#include <functional>
#include <string>
#include <vector>

#include "pipeline/schedule/cron_expression.h"
#include "pipeline/schedule/schedule_state.h"

namespace petal {

struct RetryPolicy {
  int retries = 2;                    // attempts after the first
  double backoff_seconds = 60;        // before the first retry; doubles each time
  double max_backoff_seconds = 3600;
  double delay_before(int retry) const;  // retry = 1, 2, ...
};

struct ChangeCheck {
  bool changed = false;
  std::string reason;                  // "download: 12 new or changed files", "no change"
  std::vector<std::string> overrides;  // --set values the run must use (e.g. download.revision)
  std::map<std::string, std::string> validators;  // to remember once a run succeeded
};

struct SchedulerHooks {
  std::function<ChangeCheck()> check;
  std::function<int(const std::vector<std::string>& overrides)> run;  // a run's exit code
  std::function<bool()> try_lock;     // false: someone else is triggering; the lock lasts until unlock
  std::function<void()> unlock;
  std::function<bool()> stopped;      // interruption (SIGINT/SIGTERM)
  std::function<void(double seconds)> sleep;  // returns early when stopped
  std::function<std::time_t()> now;
};

// One trigger, as above; the record is added to `state` (the caller saves it).
TriggerRecord run_trigger(const SchedulerHooks& hooks, const RetryPolicy& retry, ScheduleState& state, std::FILE* out);

struct ScheduleLoopOptions {
  CronExpression cron;
  std::string time_zone;   // empty: the machine's
  int max_triggers = 0;    // 0: until stopped
};

// Waits for each time the expression matches and triggers; `after_trigger` persists the state.
// Returns 130 when stopped, 0 after max_triggers, 1 when the expression never matches again.
int run_schedule_loop(const ScheduleLoopOptions& options, const SchedulerHooks& hooks, const RetryPolicy& retry,
                      ScheduleState& state, const std::function<void()>& after_trigger, std::FILE* out);

}  // namespace petal
