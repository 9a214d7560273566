#include "pipeline/schedule/scheduler.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include "pipeline/util/fs.h"
#include "pipeline/util/units.h"

namespace petal {

namespace {

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

std::string stamp(const SchedulerHooks& hooks) {
  const std::time_t t = hooks.now();
  std::tm local{};
  localtime_r(&t, &local);
  char text[32];
  std::strftime(text, sizeof text, "%Y-%m-%d %H:%M:%S", &local);
  return text;
}

}  // namespace

double RetryPolicy::delay_before(int retry) const {
  return std::min(max_backoff_seconds, backoff_seconds * std::pow(2.0, std::max(0, retry - 1)));
}

TriggerRecord run_trigger(const SchedulerHooks& hooks, const RetryPolicy& retry, ScheduleState& state, std::FILE* out) {
  TriggerRecord record;
  record.time_ms = now_ms();
  if (!hooks.try_lock()) {
    record.outcome = TriggerOutcome::Busy;
    record.reason = "the previous trigger is still running";
    std::fprintf(out, "[%s] skipped: %s (lock held)\n", stamp(hooks).c_str(), record.reason.c_str());
    state.add(record);
    return record;
  }
  struct Unlock {
    const SchedulerHooks& hooks;
    ~Unlock() { hooks.unlock(); }
  } unlock{hooks};

  const auto check_start = std::chrono::steady_clock::now();
  const ChangeCheck check = hooks.check();
  record.check_seconds = seconds_since(check_start);
  record.reason = check.reason;
  if (!check.changed) {
    record.outcome = TriggerOutcome::Unchanged;
    std::fprintf(out, "[%s] no change (checked in %s): no run\n", stamp(hooks).c_str(),
                 format_seconds(record.check_seconds).c_str());
    std::fflush(out);
    state.add(record);
    return record;
  }

  std::fprintf(out, "[%s] %s: retraining\n", stamp(hooks).c_str(), check.reason.c_str());
  std::fflush(out);
  const auto run_start = std::chrono::steady_clock::now();
  record.outcome = TriggerOutcome::Failed;
  for (int attempt = 1; attempt <= 1 + retry.retries; ++attempt) {
    record.attempts = attempt;
    const int code = hooks.run(check.overrides);
    if (code == 0) {
      record.outcome = TriggerOutcome::Ran;
      for (const auto& [url, validator] : check.validators) state.validators[url] = validator;
      break;
    }
    if (code == 130 || hooks.stopped()) {
      record.outcome = TriggerOutcome::Interrupted;
      record.reason = "interrupted";
      break;
    }
    record.reason = "run failed with exit code " + std::to_string(code);
    if (attempt > retry.retries) {
      std::fprintf(out, "[%s] FAILED: retraining failed %d time%s (last exit code %d); giving up until the next trigger\n",
                   stamp(hooks).c_str(), attempt, attempt == 1 ? "" : "s", code);
      break;
    }
    const double delay = retry.delay_before(attempt);
    std::fprintf(out, "[%s] retraining failed (exit code %d, attempt %d of %d); retrying in %s\n", stamp(hooks).c_str(),
                 code, attempt, 1 + retry.retries, format_seconds(delay).c_str());
    std::fflush(out);
    hooks.sleep(delay);
    if (hooks.stopped()) {
      record.outcome = TriggerOutcome::Interrupted;
      record.reason = "interrupted while waiting to retry";
      break;
    }
  }
  record.run_seconds = seconds_since(run_start);
  if (record.outcome == TriggerOutcome::Ran) {
    std::fprintf(out, "[%s] retraining finished in %s%s\n", stamp(hooks).c_str(), format_seconds(record.run_seconds).c_str(),
                 record.attempts > 1 ? (" (attempt " + std::to_string(record.attempts) + ")").c_str() : "");
  }
  std::fflush(out);
  state.add(record);
  return record;
}

int run_schedule_loop(const ScheduleLoopOptions& options, const SchedulerHooks& hooks, const RetryPolicy& retry,
                      ScheduleState& state, const std::function<void()>& after_trigger, std::FILE* out) {
  int triggers = 0;
  std::string last_fired;  // wall-clock minute of the last trigger: a repeated DST hour fires once
  while (!hooks.stopped()) {
    const auto next = options.cron.next_after(hooks.now(), options.time_zone);
    if (!next) {
      std::fprintf(out, "petal schedule: \"%s\" never matches within 5 years; nothing to wait for\n",
                   options.cron.text().c_str());
      return 1;
    }
    const std::string wall = format_local_time(*next, options.time_zone);
    std::fprintf(out, "petal schedule: next trigger %s\n", wall.c_str());
    std::fflush(out);
    // Sleep in short slices against the wall clock, so a suspended machine or a clock change
    // does not delay the trigger by the length of the slice plan.
    while (!hooks.stopped() && hooks.now() < *next) {
      hooks.sleep(std::min<double>(1.0, static_cast<double>(*next - hooks.now())));
    }
    if (hooks.stopped()) break;
    const std::string minute = wall.substr(0, 16);
    if (minute == last_fired) continue;
    last_fired = minute;
    run_trigger(hooks, retry, state, out);
    if (after_trigger) after_trigger();
    if (options.max_triggers > 0 && ++triggers >= options.max_triggers) return 0;
  }
  return 130;
}

}  // namespace petal
