// petal schedule: scheduled retraining (pipeline/schedule/scheduler.h). Each trigger checks for
// changes and, only when something changed, runs `petal run` as a child process: a run's memory
// and any crash stay out of the long-lived scheduler, and every run is an ordinary petal run
// (run log, MLflow run, register stage's champion/challenger gate).
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <ctime>
#include <thread>

#include "pipeline/cli/commands.h"
#include "pipeline/cli/session.h"
#include "pipeline/exec/project.h"
#include "pipeline/schedule/change_check.h"
#include "pipeline/schedule/cron_expression.h"
#include "pipeline/schedule/scheduler.h"
#include "pipeline/util/cancel.h"
#include "pipeline/util/error.h"
#include "pipeline/util/file_lock.h"
#include "pipeline/util/fs.h"
#include "pipeline/util/subprocess.h"
#include "pipeline/util/units.h"

namespace petal::cli {

namespace fs = std::filesystem;

CLI::App* setup_schedule(CLI::App& app, ScheduleOptions& options) {
  CLI::App* command = app.add_subcommand(
      "schedule", "retrain on a schedule: each trigger runs the experiment only if its data or config changed");
  add_experiment_options(*command, options.experiment);
  command->add_option("--cron", options.cron, "when to trigger: 5-field cron, e.g. \"0 3 * * *\" (03:00 daily), or @daily")
      ->type_name("EXPR");
  command->add_option("--tz", options.time_zone, "time zone of the cron times, e.g. Europe/Berlin (default: $TZ, else the machine's)")
      ->envname("PETAL_SCHEDULE_TZ");
  command->add_flag("--once", options.once, "trigger once now and exit (for crontab entries and systemd timers)");
  command->add_flag("--history", options.history, "print the recent triggers of this experiment's schedule and exit");
  command->add_option("--retries", options.retries, "attempts after a failed run (default 2)")->check(CLI::Range(0, 100));
  command->add_option("--backoff", options.backoff, "wait before the first retry, doubling after each (default 60s)");
  command->add_option("--max-backoff", options.max_backoff, "longest wait between retries (default 1h)");
  command->add_option("--max-triggers", options.max_triggers, "stop after this many triggers (default: run until stopped)")
      ->check(CLI::Range(0, 1000000));
  command->footer("Overlapping triggers are prevented by a lock in <state>/schedules/. Exit codes: 0 (--once: no change\n"
                  "or a successful run), 1 the run failed after its retries, 2 usage, 130 stopped.");
  return command;
}

namespace {

double duration_option(const std::string& name, const std::string& text) {
  const auto seconds = parse_duration(text);
  if (!seconds) throw PetalError(name + " \"" + text + "\" is not a duration; write e.g. 30s, 5m or 1h", {}, kExitUsage);
  return *seconds;
}

void print_history(const ScheduleState& state, const fs::path& file) {
  if (state.triggers.empty()) {
    std::printf("petal schedule: no triggers recorded in %s\n", file.c_str());
    return;
  }
  std::printf("%-19s  %-11s  %8s  %9s  %s\n", "time", "outcome", "check", "run", "reason");
  for (const auto& t : state.triggers) {
    const std::time_t seconds = static_cast<std::time_t>(t.time_ms / 1000);
    std::tm local{};
    localtime_r(&seconds, &local);
    char when[32];
    std::strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", &local);
    std::printf("%-19s  %-11s  %8s  %9s  %s\n", when, to_string(t.outcome), format_seconds(t.check_seconds).c_str(),
                t.run_seconds > 0 ? format_seconds(t.run_seconds).c_str() : "-", t.reason.c_str());
  }
}

}  // namespace

int run_schedule(const GlobalOptions& global, const ScheduleOptions& options) {
  if (options.cron.empty() && !options.once && !options.history) {
    throw PetalError("petal schedule needs --cron \"EXPR\" (e.g. \"0 3 * * *\"), or --once for one trigger now", {},
                     kExitUsage);
  }
  std::optional<CronExpression> cron;
  if (!options.cron.empty()) cron = CronExpression::parse(options.cron);
  check_time_zone(options.time_zone);
  RetryPolicy retry;
  retry.retries = options.retries;
  retry.backoff_seconds = duration_option("--backoff", options.backoff);
  retry.max_backoff_seconds = duration_option("--max-backoff", options.max_backoff);

  const Project project = Project::locate(global.state_dir.empty() ? std::nullopt : std::optional<fs::path>(global.state_dir));
  const std::string name = fs::path(options.experiment.file).stem().string();
  const fs::path state_file = project.state_dir / "schedules" / (name + ".json");
  const fs::path lock_file = project.state_dir / "schedules" / (name + ".lock");
  ScheduleState state = ScheduleState::load(state_file);
  state.experiment = options.experiment.file;
  if (options.history) {
    print_history(state, state_file);
    return kExitOk;
  }
  fs::create_directories(state_file.parent_path());
  // The experiment must load now: a typo should fail at start, not at 03:00. (Each trigger loads
  // it again, so edits between triggers are picked up.)
  (void)Session::open(global, options.experiment);

  Interrupt::install_handlers();
  FileLock lock;
  SchedulerHooks hooks;
  hooks.now = [] { return std::time(nullptr); };
  hooks.stopped = [] { return Interrupt::requested(); };
  hooks.sleep = [](double seconds) {
    using Clock = std::chrono::steady_clock;
    const Clock::time_point until = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                                       std::chrono::duration<double>(seconds));
    while (!Interrupt::requested() && Clock::now() < until) {
      const Clock::duration left = until - Clock::now();
      std::this_thread::sleep_for(std::min<Clock::duration>(std::chrono::milliseconds(100), left));
    }
  };
  hooks.try_lock = [&] {
    lock = FileLock::try_acquire(lock_file);
    return lock.held();
  };
  hooks.unlock = [&] { lock.release(); };
  hooks.check = [&] {
    try {
      return check_for_changes(global, options.experiment, state);
    } catch (const PetalError& e) {
      // A broken experiment or an unreachable data URL: a run would fail the same way, and it
      // reports the error (with its location) where people look - the run's own output.
      ChangeCheck check;
      check.changed = true;
      check.reason = "cannot check for changes (" + std::string(e.what()) + ")";
      return check;
    }
  };
  hooks.run = [&](const std::vector<std::string>& overrides) {
    std::error_code ec;
    const fs::path self = fs::read_symlink("/proc/self/exe", ec);
    SubprocessSpec spec;
    spec.argv = {ec ? std::string("petal") : self.string()};
    if (!global.state_dir.empty()) spec.argv.insert(spec.argv.end(), {"--state-dir", global.state_dir});
    spec.argv.insert(spec.argv.end(), {"run", options.experiment.file});
    for (const auto& o : options.experiment.overrides) spec.argv.insert(spec.argv.end(), {"--set", o});
    for (const auto& o : overrides) spec.argv.insert(spec.argv.end(), {"--set", o});
    std::fflush(stdout);
    const SubprocessResult result = run_subprocess(spec, [] { return Interrupt::requested(); });
    if (result.cancelled) return static_cast<int>(kExitInterrupted);
    return result.signal ? 128 + result.signal : result.exit_code;
  };

  if (options.once) {
    const TriggerRecord record = run_trigger(hooks, retry, state, stdout);
    state.save(state_file);
    switch (record.outcome) {
      case TriggerOutcome::Unchanged:
      case TriggerOutcome::Ran: return kExitOk;
      case TriggerOutcome::Busy: return kExitOk;
      case TriggerOutcome::Interrupted: return kExitInterrupted;
      case TriggerOutcome::Failed: return kExitStageFailed;
    }
  }
  if (!cron) throw PetalError("petal schedule needs --cron \"EXPR\" unless --once is given", {}, kExitUsage);
  std::printf("petal schedule: %s on \"%s\" (%s), retries %d, backoff %s; state in %s\n", options.experiment.file.c_str(),
              options.cron.c_str(), options.time_zone.empty() ? "local time" : options.time_zone.c_str(), retry.retries,
              format_seconds(retry.backoff_seconds).c_str(), state_file.c_str());
  ScheduleLoopOptions loop;
  loop.cron = *cron;
  loop.time_zone = options.time_zone;
  loop.max_triggers = options.max_triggers;
  const int code = run_schedule_loop(loop, hooks, retry, state, [&] { state.save(state_file); }, stdout);
  if (code == kExitInterrupted) std::printf("petal schedule: stopped\n");
  return code;
}

}  // namespace petal::cli
