// Scheduled retraining: cron expressions (time zones, DST), the trigger logic (change check,
// lock, retries with backoff) with fake hooks, and `petal schedule` end to end on shell-stage
// experiments with a local data folder and a data URL served over HTTP.
#include <doctest/doctest.h>

#include <chrono>
#include <cmath>
#include <fstream>
#include <thread>

#include "pipeline/schedule/cron_expression.h"
#include "pipeline/schedule/scheduler.h"
#include "pipeline/util/error.h"
#include "pipeline/util/file_lock.h"
#include "pipeline/util/units.h"
#include "tests/support/test_support.h"

namespace petal {
namespace {

using test::TempDir;

// Seconds since the epoch of a UTC civil time.
std::time_t utc(int year, int month, int day, int hour, int minute) {
  std::tm t{};
  t.tm_year = year - 1900;
  t.tm_mon = month - 1;
  t.tm_mday = day;
  t.tm_hour = hour;
  t.tm_min = minute;
  return timegm(&t);
}

std::string next_utc(const std::string& cron, std::time_t after, const std::string& zone = "UTC") {
  const auto next = CronExpression::parse(cron).next_after(after, zone);
  if (!next) return "never";
  return format_local_time(*next, "UTC");
}

TEST_CASE("cron: fields, lists, ranges, steps, names and macros") {
  const std::time_t monday = utc(2026, 11, 23, 10, 7);  // Monday 2026-11-23 10:07 UTC
  CHECK(next_utc("* * * * *", monday) == "2026-11-23 10:08 UTC");
  CHECK(next_utc("*/15 * * * *", monday) == "2026-11-23 10:15 UTC");
  CHECK(next_utc("0 3 * * *", monday) == "2026-11-24 03:00 UTC");
  CHECK(next_utc("5,40 10-11 * * *", monday) == "2026-11-23 10:40 UTC");
  CHECK(next_utc("10-40/10 * * * *", monday) == "2026-11-23 10:10 UTC");
  CHECK(next_utc("0 9 * * sat", monday) == "2026-11-28 09:00 UTC");
  CHECK(next_utc("0 9 * * 7", monday) == "2026-11-29 09:00 UTC");  // 7 is Sunday
  CHECK(next_utc("0 9 * * mon-fri", monday) == "2026-11-24 09:00 UTC");
  CHECK(next_utc("0 0 1 jan *", monday) == "2027-01-01 00:00 UTC");
  CHECK(next_utc("@monthly", monday) == "2026-12-01 00:00 UTC");
  CHECK(next_utc("@hourly", monday) == "2026-11-23 11:00 UTC");
  // Both day fields restricted: either matches (the 1st, or any Friday).
  CHECK(next_utc("0 0 1 * fri", monday) == "2026-11-27 00:00 UTC");
  CHECK(next_utc("0 0 30 2 *", monday) == "never");
  // The exact minute is not "after": a trigger never fires twice for the same minute.
  CHECK(next_utc("7 10 * * *", monday) == "2026-11-24 10:07 UTC");
}

TEST_CASE("cron: mistakes are reported with the field and the accepted range") {
  const auto message = [](const std::string& text) {
    try {
      CronExpression::parse(text);
    } catch (const PetalError& e) {
      return std::string(e.what());
    }
    return std::string("accepted");
  };
  CHECK(message("0 25 * * *").find("hour 25 is out of range (0-23)") != std::string::npos);
  CHECK(message("0 3 * *").find("has 4 fields, not 5") != std::string::npos);
  CHECK(message("*/0 * * * *").find("minute step \"0\" must be a whole number >= 1") != std::string::npos);
  CHECK(message("0 3 * * funday").find("day-of-week \"funday\" is not a number or a name") != std::string::npos);
  CHECK(message("0 5-3 * * *").find("runs backwards") != std::string::npos);
  CHECK(message("@fortnightly").find("unknown macro") != std::string::npos);
  CHECK_THROWS_AS(check_time_zone("Mars/Olympus_Mons"), PetalError);
  CHECK_NOTHROW(check_time_zone("Europe/Berlin"));
}

TEST_CASE("cron: times are wall-clock times of the schedule's zone, and DST gaps never fire") {
  // 03:00 in Berlin is 02:00 UTC in winter (CET) and 01:00 UTC in summer (CEST).
  CHECK(next_utc("0 3 * * *", utc(2026, 11, 23, 12, 0), "Europe/Berlin") == "2026-11-24 02:00 UTC");
  CHECK(next_utc("0 3 * * *", utc(2026, 7, 1, 12, 0), "Europe/Berlin") == "2026-07-02 01:00 UTC");
  CHECK(next_utc("0 3 * * *", utc(2026, 11, 23, 12, 0), "America/New_York") == "2026-11-24 08:00 UTC");
  // Clocks jump from 02:00 to 03:00 on 2026-03-29 in Berlin: 02:30 does not exist that day.
  CHECK(next_utc("30 2 * * *", utc(2026, 3, 28, 12, 0), "Europe/Berlin") == "2026-03-30 00:30 UTC");
  CHECK(format_local_time(utc(2026, 3, 30, 0, 30), "Europe/Berlin") == "2026-03-30 02:30 CEST");
}

TEST_CASE("durations and retry backoff") {
  CHECK(parse_duration("250ms") == doctest::Approx(0.25));
  CHECK(parse_duration("90") == doctest::Approx(90));
  CHECK(parse_duration("5m") == doctest::Approx(300));
  CHECK(parse_duration("1.5h") == doctest::Approx(5400));
  CHECK_FALSE(parse_duration("soon"));
  CHECK_FALSE(parse_duration("-1s"));
  RetryPolicy retry;
  retry.backoff_seconds = 60;
  retry.max_backoff_seconds = 200;
  CHECK(retry.delay_before(1) == doctest::Approx(60));
  CHECK(retry.delay_before(2) == doctest::Approx(120));
  CHECK(retry.delay_before(3) == doctest::Approx(200));
}

// Fake hooks: a scripted change check and run results, a clock that only sleep() advances.
struct FakeWorld {
  std::time_t clock = utc(2026, 11, 23, 2, 58);
  bool changed = true;
  std::vector<int> exit_codes;  // one per run; 0 when exhausted
  std::vector<std::time_t> runs;
  std::vector<double> sleeps;
  int checks = 0;
  bool lock_free = true;
  SchedulerHooks hooks() {
    SchedulerHooks h;
    h.now = [this] { return clock; };
    h.sleep = [this](double s) {
      sleeps.push_back(s);
      clock += static_cast<std::time_t>(std::ceil(s));
    };
    h.stopped = [] { return false; };
    h.try_lock = [this] { return lock_free; };
    h.unlock = [] {};
    h.check = [this] {
      ++checks;
      ChangeCheck c;
      c.changed = changed;
      c.reason = changed ? "download: new photos" : "no change";
      c.validators = {{"http://data/x.tgz", "etag=\"v2\""}};
      return c;
    };
    h.run = [this](const std::vector<std::string>&) {
      runs.push_back(clock);
      const int code = runs.size() <= exit_codes.size() ? exit_codes[runs.size() - 1] : 0;
      return code;
    };
    return h;
  }
};

TEST_CASE("trigger: no change -> no run, a change -> one run, validators kept only after a success") {
  FakeWorld world;
  ScheduleState state;
  RetryPolicy retry;
  std::FILE* out = std::tmpfile();
  world.changed = false;
  CHECK(run_trigger(world.hooks(), retry, state, out).outcome == TriggerOutcome::Unchanged);
  CHECK(world.runs.empty());
  CHECK(state.validators.empty());
  world.changed = true;
  CHECK(run_trigger(world.hooks(), retry, state, out).outcome == TriggerOutcome::Ran);
  CHECK(world.runs.size() == 1);
  CHECK(state.validators.at("http://data/x.tgz") == "etag=\"v2\"");
  CHECK(state.triggers.size() == 2);
  std::fclose(out);
}

TEST_CASE("trigger: a failed run is retried with doubling backoff, then reported failed") {
  FakeWorld world;
  world.exit_codes = {1, 1, 1};
  ScheduleState state;
  RetryPolicy retry;
  retry.retries = 2;
  retry.backoff_seconds = 30;
  std::FILE* out = std::tmpfile();
  const TriggerRecord record = run_trigger(world.hooks(), retry, state, out);
  CHECK(record.outcome == TriggerOutcome::Failed);
  CHECK(record.attempts == 3);
  CHECK(world.sleeps == std::vector<double>{30, 60});
  CHECK(record.reason == "run failed with exit code 1");
  CHECK(state.validators.empty());  // the next trigger sees the change again

  world.runs.clear();
  world.exit_codes = {1, 0};
  world.sleeps.clear();
  CHECK(run_trigger(world.hooks(), retry, state, out).outcome == TriggerOutcome::Ran);
  CHECK(world.runs.size() == 2);
  CHECK(world.sleeps == std::vector<double>{30});
  std::fclose(out);
}

TEST_CASE("trigger: while another trigger holds the lock, nothing is checked or run") {
  FakeWorld world;
  world.lock_free = false;
  ScheduleState state;
  std::FILE* out = std::tmpfile();
  CHECK(run_trigger(world.hooks(), RetryPolicy{}, state, out).outcome == TriggerOutcome::Busy);
  CHECK(world.checks == 0);
  CHECK(world.runs.empty());
  std::fclose(out);
}

TEST_CASE("schedule loop: triggers at each matching minute of the clock") {
  FakeWorld world;  // 02:58 UTC
  ScheduleState state;
  ScheduleLoopOptions loop;
  loop.cron = CronExpression::parse("*/5 3 * * *");
  loop.time_zone = "UTC";
  loop.max_triggers = 3;
  int saved = 0;
  std::FILE* out = std::tmpfile();
  CHECK(run_schedule_loop(loop, world.hooks(), RetryPolicy{}, state, [&] { ++saved; }, out) == 0);
  REQUIRE(world.runs.size() == 3);
  CHECK(format_local_time(world.runs[0], "UTC") == "2026-11-23 03:00 UTC");
  CHECK(format_local_time(world.runs[1], "UTC") == "2026-11-23 03:05 UTC");
  CHECK(format_local_time(world.runs[2], "UTC") == "2026-11-23 03:10 UTC");
  CHECK(saved == 3);
  std::fclose(out);
}

// ---- petal schedule, end to end ----

struct ScheduleCli {
  TempDir dir;
  std::string out;
  int run(const std::string& args) {
    return test::run_command("cd " + dir.path().string() + " && PETAL_TRACKING=off COUNTER_FILE=" + (dir / "counter").string() +
                                 " " + test::petal_binary() + " --state-dir state schedule exp.toml " + args + " 2>&1",
                             &out);
  }
  int runs() const {
    std::ifstream in(dir / "counter");
    int n = 0;
    for (std::string line; std::getline(in, line);) ++n;
    return n;
  }
};

void write_local_experiment(const TempDir& dir, const std::string& command = "echo run >> $COUNTER_FILE; ls $PETAL_IN_DOWNLOAD > $PETAL_OUT/files") {
  for (int i = 0; i < 3; ++i) test::write_bmp(dir / "data" / "a" / ("a" + std::to_string(i) + ".bmp"), i);
  for (int i = 0; i < 3; ++i) test::write_bmp(dir / "data" / "b" / ("b" + std::to_string(i) + ".bmp"), 10 + i);
  test::write_file(dir / "exp.toml", "name = \"sched\"\n[download]\nsource = \"local\"\npath = \"data\"\n"
                                     "[fit]\nkind = \"shell\"\nneeds = [\"download\"]\ncommand = \"" + command + "\"\n");
}

TEST_CASE("petal schedule --once: new photos -> one run, no change -> no run (in milliseconds), history kept") {
  ScheduleCli cli;
  write_local_experiment(cli.dir);
  REQUIRE(cli.run("--once") == 0);
  CHECK(cli.runs() == 1);
  CHECK(cli.out.find("retraining finished") != std::string::npos);

  const auto start = std::chrono::steady_clock::now();
  REQUIRE(cli.run("--once") == 0);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  CHECK(cli.runs() == 1);
  CHECK(cli.out.find("no change (checked in") != std::string::npos);
  MESSAGE("no-change trigger: " << cli.out.substr(cli.out.find("no change")) << "whole command " << seconds << " s");

  test::write_bmp(cli.dir / "data" / "a" / "a_new.bmp", 99);
  REQUIRE(cli.run("--once") == 0);
  CHECK(cli.runs() == 2);
  CHECK(cli.out.find("download: external input download.path content changed") != std::string::npos);

  REQUIRE(cli.run("--history") == 0);
  CHECK(cli.out.find("ran") != std::string::npos);
  CHECK(cli.out.find("unchanged") != std::string::npos);
}

TEST_CASE("petal schedule --once: a failing run is retried with backoff, then the trigger fails") {
  ScheduleCli cli;
  write_local_experiment(cli.dir, "echo run >> $COUNTER_FILE; exit 3");
  CHECK(cli.run("--once --retries 2 --backoff 50ms") == 1);
  CHECK(cli.runs() == 3);
  CHECK(cli.out.find("retraining failed (exit code 1, attempt 1 of 3); retrying in 50ms") != std::string::npos);
  CHECK(cli.out.find("retrying in 100ms") != std::string::npos);
  CHECK(cli.out.find("FAILED: retraining failed 3 times") != std::string::npos);
}

TEST_CASE("petal schedule: a trigger while another holds the lock is skipped") {
  ScheduleCli cli;
  write_local_experiment(cli.dir);
  std::filesystem::create_directories(cli.dir / "state" / "schedules");
  FileLock held = FileLock::acquire(cli.dir / "state" / "schedules" / "exp.lock");
  REQUIRE(cli.run("--once") == 0);
  CHECK(cli.out.find("skipped: the previous trigger is still running") != std::string::npos);
  CHECK(cli.runs() == 0);
}

TEST_CASE("petal schedule: usage errors name the option") {
  ScheduleCli cli;
  write_local_experiment(cli.dir);
  CHECK(cli.run("") == 2);
  CHECK(cli.out.find("needs --cron") != std::string::npos);
  CHECK(cli.run("--cron '0 3 * *'") == 2);
  CHECK(cli.out.find("has 4 fields, not 5") != std::string::npos);
  CHECK(cli.run("--cron '@daily' --tz Nowhere/City") == 2);
  CHECK(cli.out.find("is not a time zone") != std::string::npos);
  CHECK(cli.run("--once --backoff soon") == 2);
  CHECK(cli.out.find("--backoff \"soon\" is not a duration") != std::string::npos);
}

TEST_CASE("petal schedule --cron: the long-lived scheduler fires at the next minute") {
  ScheduleCli cli;
  write_local_experiment(cli.dir);
  REQUIRE(cli.run("--cron '* * * * *' --tz UTC --max-triggers 1") == 0);
  CHECK(cli.out.find("petal schedule: next trigger") != std::string::npos);
  CHECK(cli.runs() == 1);
}

TEST_CASE("petal schedule --once: a data URL is re-downloaded only when the server's validators change") {
  ScheduleCli cli;
  TempDir served;
  for (int i = 0; i < 3; ++i) test::write_bmp(cli.dir / "pack" / "a" / ("a" + std::to_string(i) + ".bmp"), i);
  for (int i = 0; i < 3; ++i) test::write_bmp(cli.dir / "pack" / "b" / ("b" + std::to_string(i) + ".bmp"), 10 + i);
  REQUIRE(test::run_command("cd " + cli.dir.path().string() + "/pack && tar czf " + (served / "data.tgz").string() + " a b") == 0);
  test::HttpServer server(served.path());
  test::write_file(cli.dir / "exp.toml", "name = \"sched\"\n[download]\nsource = \"url\"\nurl = \"" + server.url("data.tgz") +
                                             "\"\n[fit]\nkind = \"shell\"\nneeds = [\"download\"]\n"
                                             "command = \"echo run >> $COUNTER_FILE\"\n");
  REQUIRE(cli.run("--once") == 0);
  CHECK(cli.runs() == 1);
  REQUIRE(cli.run("--once") == 0);
  CHECK(cli.out.find("no change") != std::string::npos);
  CHECK(cli.runs() == 1);
  // New photos in the published archive: another size and modification time.
  test::write_bmp(cli.dir / "pack" / "a" / "a9.bmp", 9);
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));  // Last-Modified has 1 s resolution
  REQUIRE(test::run_command("cd " + cli.dir.path().string() + "/pack && tar czf " + (served / "data.tgz").string() + " a b") == 0);
  REQUIRE(cli.run("--once") == 0);
  CHECK(cli.out.find("data.tgz changed") != std::string::npos);
  CHECK(cli.runs() == 2);
}

}  // namespace
}  // namespace petal
