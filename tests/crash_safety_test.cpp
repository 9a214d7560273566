// Crash safety of the stage cache, tested from outside: `petal run` is started as a real process and
// killed (SIGKILL) at random points of a run, many times. After every kill:
//   (a) every entry folder under cache/entries must be complete: manifest.json parses, names its own
//       key, and lists exactly the files in out/, each with the listed size and sha256;
//   (b) a rerun to completion must exit 0, and every stage it reports "cached" must be an entry that
//       existed, and verified, right after the kill (petal reuses only committed entries);
//   (c) every stage's out/ must then be byte-identical to an uninterrupted reference run's (the keys
//       are equal because the experiment is the same, so entries are compared key by key).
// A second case interrupts a run with SIGINT (Ctrl-C): exit 130, nothing committed for the stage that
// was stopped, no temp folder left, the stage's command stopped, and a rerun completes.
//
// Environment: PETAL_CRASH_SEED fixes the random kill points (the seed is printed on every run);
// PETAL_CRASH_KILLS sets how many kills must land (default 60); PETAL_CRASH_PETAL names another petal
// executable to test (default: the build's).
#include <doctest/doctest.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "pipeline/util/sha256.h"
#include "tests/support/cache_inspection.h"
#include "tests/support/test_support.h"

extern char** environ;

namespace {

using namespace petal::test;
using nlohmann::json;
using Clock = std::chrono::steady_clock;

// ---------------------------------------------------------------------------------------------
// The experiment: a diamond (a -> b, a -> c, b + c -> d) then a chain (d -> e -> f). Every stage
// writes its outputs a little at a time (short sleeps between appends), so kills land mid-write;
// the content is deterministic. An uninterrupted run takes a few hundred milliseconds.
const char* const kStages[] = {"a", "b", "c", "d", "e", "f"};

const char* const kExperiment = R"TOML(name = "crashsafety"

[a]
kind = "shell"
command = '''
mkdir -p "$PETAL_OUT/parts"
i=0
while [ $i -lt 20 ]; do
  echo "a line $i" >> "$PETAL_OUT/a.txt"
  printf 'part %s of a\n' $i > "$PETAL_OUT/parts/p$i.txt"
  i=$((i+1))
  sleep 0.002
done
'''

[b]
kind = "shell"
needs = ["a"]
command = '''
while read -r line; do
  echo "b saw: $line" >> "$PETAL_OUT/b.txt"
  sleep 0.002
done < "$PETAL_IN_A/a.txt"
'''

[c]
kind = "shell"
needs = ["a"]
command = '''
for p in "$PETAL_IN_A"/parts/p*.txt; do
  cat "$p" >> "$PETAL_OUT/c.txt"
  sleep 0.002
done
seq 1 30000 > "$PETAL_OUT/numbers.txt"
echo '{"parts": 20}' > "$PETAL_METRICS"
'''

[d]
kind = "shell"
needs = ["b", "c"]
command = '''
cat "$PETAL_IN_B/b.txt" > "$PETAL_OUT/d.txt"
sleep 0.01
cat "$PETAL_IN_C/c.txt" >> "$PETAL_OUT/d.txt"
sleep 0.01
cksum < "$PETAL_IN_C/numbers.txt" > "$PETAL_OUT/numbers.cksum"
'''

[e]
kind = "shell"
needs = ["d"]
command = '''
mkdir -p "$PETAL_OUT/report"
i=0
while [ $i -lt 10 ]; do
  head -n $((i * 4 + 1)) "$PETAL_IN_D/d.txt" | tail -n 1 >> "$PETAL_OUT/report/summary.txt"
  i=$((i+1))
  sleep 0.002
done
wc -l < "$PETAL_IN_D/d.txt" > "$PETAL_OUT/report/lines.txt"
'''

[f]
kind = "shell"
needs = ["e"]
command = '''
cat "$PETAL_IN_E/report/summary.txt" "$PETAL_IN_E/report/lines.txt" > "$PETAL_OUT/final.txt"
sleep 0.01
echo "done" >> "$PETAL_OUT/final.txt"
'''
)TOML";

// What must be rebuilt when a stage's entry is removed: the stage and everything downstream.
const std::map<std::string, std::vector<std::string>> kDownstream = {
    {"a", {"a", "b", "c", "d", "e", "f"}}, {"b", {"b", "d", "e", "f"}}, {"c", {"c", "d", "e", "f"}},
    {"d", {"d", "e", "f"}},                {"e", {"e", "f"}},           {"f", {"f"}}};

// ---------------------------------------------------------------------------------------------
// Processes

// The petal under test: the build's, or $PETAL_CRASH_PETAL (e.g. a sanitizer build or a private copy).
std::string petal_exe() {
  if (const char* text = std::getenv("PETAL_CRASH_PETAL"); text && *text) return text;
  return petal_binary();
}

// Starts `petal ARGS...` with stdout and stderr going to `output` (or /dev/null).
pid_t spawn_petal(const std::vector<std::string>& args, const fs::path& output = {}) {
  std::vector<std::string> argv_strings = {petal_exe()};
  argv_strings.insert(argv_strings.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& s : argv_strings) argv.push_back(s.data());
  argv.push_back(nullptr);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  const std::string out_path = output.empty() ? std::string("/dev/null") : output.string();
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);

  // The child starts with default signal handling and nothing blocked, whatever the test runner set.
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t defaults, empty;
  sigemptyset(&defaults);
  for (int s : {SIGINT, SIGTERM, SIGHUP, SIGPIPE}) sigaddset(&defaults, s);
  sigemptyset(&empty);
  posix_spawnattr_setsigdefault(&attr, &defaults);
  posix_spawnattr_setsigmask(&attr, &empty);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);

  pid_t pid = -1;
  const int rc = posix_spawn(&pid, argv[0], &actions, &attr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  REQUIRE_MESSAGE(rc == 0, "posix_spawn failed: " << std::string(std::strerror(rc)));
  return pid;
}

int wait_for(pid_t pid) {
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) FAIL("waitpid failed: " << std::string(std::strerror(errno)));
  }
  return status;
}

// Waits at most `limit` for the process; returns false (and kills it) if it did not end.
bool wait_for_within(pid_t pid, std::chrono::milliseconds limit, int* status) {
  const auto deadline = Clock::now() + limit;
  while (Clock::now() < deadline) {
    const pid_t done = ::waitpid(pid, status, WNOHANG);
    if (done == pid) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  ::kill(pid, SIGKILL);
  wait_for(pid);
  return false;
}

std::string quote(const fs::path& p) { return "'" + p.string() + "'"; }

// `petal --state-dir STATE ARGS`, output captured.
int run_petal(const fs::path& state, const std::string& args, std::string* output) {
  return run_command("'" + petal_exe() + "' --state-dir " + quote(state) + " " + args, output);
}

// stage -> key, from `petal status --json`.
std::map<std::string, std::string> stage_keys(const fs::path& state, const fs::path& experiment,
                                              std::map<std::string, std::string>* states = nullptr,
                                              bool verify = false) {
  std::string output;
  const int rc = run_petal(state, "status " + quote(experiment) + " --json" + (verify ? " --verify" : ""), &output);
  REQUIRE_MESSAGE(rc == 0, output);
  const json status = json::parse(output);
  std::map<std::string, std::string> keys;
  for (const auto& s : status.at("stages")) {
    keys[s.at("stage").get<std::string>()] = s.at("key").get<std::string>();
    if (states) (*states)[s.at("stage").get<std::string>()] = s.at("state").get<std::string>();
  }
  return keys;
}

std::uint64_t pick_seed() {
  if (const char* text = std::getenv("PETAL_CRASH_SEED"); text && *text) return std::strtoull(text, nullptr, 10);
  std::random_device device;
  return (static_cast<std::uint64_t>(device()) << 32) ^ device();
}

}  // namespace

TEST_CASE("crash safety: SIGKILL at random points never leaves a corrupt entry or a wrong reuse") {
  const std::uint64_t seed = pick_seed();
  std::fprintf(stderr, "crash-safety: seed %llu (set PETAL_CRASH_SEED=%llu to repeat)\n",
               static_cast<unsigned long long>(seed), static_cast<unsigned long long>(seed));
  std::mt19937_64 random(seed);
  int wanted_kills = 60;
  if (const char* text = std::getenv("PETAL_CRASH_KILLS"); text && *text) wanted_kills = std::max(1, std::atoi(text));

  TempDir temp;
  const fs::path experiment = temp / "exp" / "exp.toml";
  write_file(experiment, kExperiment);

  // ---- the reference: one uninterrupted run ----
  const fs::path reference = temp / "reference";
  const auto t0 = Clock::now();
  const pid_t ref_pid = spawn_petal({"--state-dir", reference.string(), "run", experiment.string(), "-j", "2"});
  const int ref_status = wait_for(ref_pid);
  const auto run_duration = Clock::now() - t0;
  REQUIRE(WIFEXITED(ref_status));
  REQUIRE(WEXITSTATUS(ref_status) == 0);
  const long long run_us = std::chrono::duration_cast<std::chrono::microseconds>(run_duration).count();

  const std::map<std::string, std::string> keys = stage_keys(reference, experiment);
  REQUIRE(keys.size() == std::size(kStages));
  std::map<std::string, std::string> stage_of_key;
  std::map<std::string, Tree> expected;  // key -> out/ content of the reference run
  for (const auto& [stage, key] : keys) {
    stage_of_key[key] = stage;
    const EntryCheck check = check_entry(entry_dir(reference, key));
    REQUIRE_MESSAGE(check.complete, "reference entry of " << stage << ": " << check.problem);
    expected[key] = read_tree(entry_dir(reference, key) / "out");
    REQUIRE(!expected[key].empty());
  }
  // A second uninterrupted run in another folder gives the same bytes (the content is deterministic).
  {
    const fs::path again = temp / "reference2";
    std::string output;
    REQUIRE(run_petal(again, "run " + quote(experiment) + " -j 2", &output) == 0);
    for (const auto& [key, tree] : expected) REQUIRE(read_tree(entry_dir(again, key) / "out") == tree);
    fs::remove_all(again);
  }
  std::fprintf(stderr, "crash-safety: uninterrupted run takes %lld ms; killing at random points in [0, %lld] ms\n",
               run_us / 1000, run_us * 11 / 10000);

  // ---- kill, check, rerun, compare ----
  int attempts = 0, runs = 0, kills = 0, finished_first = 0, fresh_dirs = 0, reused_dirs = 0, double_kills = 0;
  int kills_mid_stage = 0;  // kills that left a new temp folder behind: a stage was being built
  std::size_t committed_after_kills = 0, corrupt = 0, mismatches = 0, unverified_reuse = 0,
              rebuilt_committed = 0, max_leftovers = 0, unparseable_log_lines = 0;
  std::map<std::size_t, int> entries_per_kill;  // complete entries right after a kill -> how many kills
  std::vector<std::string> problems;
  const auto note = [&](const std::string& text) {
    if (problems.size() < 20) problems.push_back(text);
  };

  fs::path state;
  int dir_counter = 0;
  // About 0.3 s per round on 2 cores; the deadline only guards against a hang (60 kills: 85 s).
  const auto deadline = Clock::now() + std::chrono::seconds(85) * std::max(1, wanted_kills / 60);
  while (kills < wanted_kills && attempts < wanted_kills * 3 && Clock::now() < deadline) {
    ++attempts;
    // Mostly a fresh state folder; sometimes the previous one, with some entries removed (the stage
    // and everything downstream) so there is work to do among the leftovers of earlier kills.
    const bool reuse = !state.empty() && std::uniform_int_distribution<int>(0, 9)(random) < 4;
    // The kill lands anywhere in what the run has to do (with a margin past its end).
    long long max_delay_us = run_us * 11 / 10;
    if (reuse) {
      ++reused_dirs;
      const std::string from = kStages[std::uniform_int_distribution<std::size_t>(0, std::size(kStages) - 1)(random)];
      for (const auto& stage : kDownstream.at(from)) fs::remove_all(entry_dir(state, keys.at(stage)));
      max_delay_us = std::max<long long>(run_us / 3, max_delay_us * static_cast<long long>(kDownstream.at(from).size()) /
                                                         static_cast<long long>(std::size(kStages)));
    } else {
      if (!state.empty()) fs::remove_all(state);
      state = temp / ("state" + std::to_string(++dir_counter));
      ++fresh_dirs;
    }
    const int kill_runs = reuse && std::uniform_int_distribution<int>(0, 1)(random) == 1 ? 2 : 1;
    if (kill_runs == 2) ++double_kills;

    std::map<std::string, EntryCheck> after_kill;
    for (int k = 0; k < kill_runs; ++k) {
      const long long delay_us = std::uniform_int_distribution<long long>(0, max_delay_us)(random);
      const std::size_t temps_before = count_children(state / "cache" / "tmp");
      ++runs;
      const pid_t pid = spawn_petal({"--state-dir", state.string(), "run", experiment.string(), "-j", "2"});
      std::this_thread::sleep_for(std::chrono::microseconds(delay_us));
      ::kill(pid, SIGKILL);
      const int status = wait_for(pid);
      if (WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) {
        ++kills;
      } else {
        ++finished_first;
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
          ++mismatches;
          note("a run that was not killed exited with status " + std::to_string(status));
        }
      }

      // (a) every entry folder is a complete entry.
      after_kill = check_entries(state);
      for (const auto& [key, check] : after_kill) {
        if (!check.complete) {
          ++corrupt;
          note("after a kill at " + std::to_string(delay_us / 1000) + " ms, entry " + key + " is incomplete: " +
               check.problem);
        } else if (!expected.count(key)) {
          ++mismatches;
          note("entry " + key + " (" + check.stage + ") has a key the reference run does not have");
        } else if (read_tree(entry_dir(state, key) / "out") != expected.at(key)) {
          ++mismatches;
          note("after a kill, entry of " + check.stage + " differs from the reference run");
        } else if (check.stage != stage_of_key.at(key)) {
          ++mismatches;
          note("entry " + key + " says stage " + check.stage + ", expected " + stage_of_key.at(key));
        }
      }
      const std::size_t temps_after = count_children(state / "cache" / "tmp");
      if (temps_after > temps_before) ++kills_mid_stage;
      max_leftovers = std::max(max_leftovers, temps_after);
      if (WIFSIGNALED(status)) {
        std::size_t complete = 0;
        for (const auto& [key, check] : after_kill) complete += check.complete ? 1 : 0;
        ++entries_per_kill[complete];
      }
    }
    std::set<std::string> verified;
    for (const auto& [key, check] : after_kill) {
      if (check.complete) verified.insert(key);
    }
    committed_after_kills += verified.size();

    // (b) a rerun completes and reuses only entries that were complete right after the kill.
    std::string output;
    const int rc = run_petal(state, "run " + quote(experiment) + " -j 2", &output);
    if (rc != 0) {
      ++mismatches;
      note("rerun after a kill exited " + std::to_string(rc) + ":\n" + output);
      continue;
    }
    const RunReport report = parse_run_output(output);
    const auto logged = run_log_records(state, report.run_id, &unparseable_log_lines);
    for (const char* stage : kStages) {
      const std::string& key = keys.at(stage);
      const auto it = report.status.find(stage);
      if (it == report.status.end()) {
        ++mismatches;
        note(std::string("rerun did not report stage ") + stage + ":\n" + output);
        continue;
      }
      if (key.rfind(report.short_key.at(stage), 0) != 0) {
        ++mismatches;
        note(std::string("rerun printed key ") + report.short_key.at(stage) + " for " + stage + ", expected " + key);
      }
      if (!logged.count(stage) || logged.at(stage) != it->second) {
        ++mismatches;
        note(std::string("runs.log disagrees with the output about ") + stage + " in run " + report.run_id);
      }
      if (it->second == "cached" && !verified.count(key)) {
        ++unverified_reuse;
        note(std::string("rerun reused ") + stage + " (" + key + ") although no complete entry existed after the kill");
      }
      if (it->second == "ran" && verified.count(key)) {
        ++rebuilt_committed;
        note(std::string("rerun rebuilt ") + stage + " although its entry was complete after the kill");
      }
    }

    // (c) every stage's out/ is byte-identical to the reference run's, and petal agrees (re-hashing).
    const auto final_entries = check_entries(state);
    for (const auto& [stage, key] : keys) {
      const auto it = final_entries.find(key);
      if (it == final_entries.end()) {
        ++mismatches;
        note("after the rerun, stage " + stage + " has no entry");
      } else if (!it->second.complete) {
        ++corrupt;
        note("after the rerun, entry of " + stage + " is incomplete: " + it->second.problem);
      } else if (read_tree(entry_dir(state, key) / "out") != expected.at(key)) {
        ++mismatches;
        note("after the rerun, out/ of " + stage + " differs from the reference run");
      }
    }
    std::map<std::string, std::string> states;
    stage_keys(state, experiment, &states, /*verify=*/true);
    for (const auto& [stage, s] : states) {
      if (s != "cached") {
        ++mismatches;
        note("after the rerun, `petal status --verify` says " + stage + " is " + s);
      }
    }
  }

  for (const auto& p : problems) std::fprintf(stderr, "crash-safety problem: %s\n", p.c_str());
  std::ostringstream histogram;
  for (const auto& [complete, count] : entries_per_kill) histogram << " " << complete << ":" << count;
  MESSAGE("crash-safety: " << kills << " kills, " << committed_after_kills << " entries found committed after kills, "
                           << corrupt << " corrupt, " << mismatches << " mismatches\n  details: " << runs
                           << " runs started in " << attempts << " rounds (" << fresh_dirs << " fresh state dirs, "
                           << reused_dirs << " reused, " << double_kills << " with two kills before the rerun), "
                           << finished_first << " finished before the kill, " << kills_mid_stage
                           << " kills left a stage's temp folder; complete entries per kill [n:kills]"
                           << histogram.str() << "; " << unverified_reuse << " reuses of unverified entries, "
                           << rebuilt_committed << " committed entries rebuilt, at most " << max_leftovers
                           << " leftover temp folders, " << unparseable_log_lines << " torn run-log lines; seed "
                           << seed);
  CHECK(kills >= wanted_kills);
  CHECK(committed_after_kills > 0);
  CHECK(unverified_reuse == 0);
  CHECK(rebuilt_committed == 0);
  REQUIRE(corrupt == 0);
  REQUIRE(mismatches == 0);
}

TEST_CASE("crash safety: SIGINT stops the run with exit 130 and commits nothing for the stopped stage") {
  TempDir temp;
  const fs::path experiment = temp / "exp" / "exp.toml";
  write_file(experiment, R"TOML(name = "interrupt"

[fast]
kind = "shell"
command = "echo fast > $PETAL_OUT/fast.txt"

[slow]
kind = "shell"
needs = ["fast"]
command = '''
echo $$ > slow.pid
i=0
while [ $i -lt 150 ]; do
  echo "slow line $i" >> "$PETAL_OUT/slow.txt"
  i=$((i+1))
  sleep 0.01
done
'''
)TOML");
  const fs::path state = temp / "state";
  const fs::path pid_file = temp / "exp" / "slow.pid";
  const std::map<std::string, std::string> keys = stage_keys(state, experiment);

  const fs::path output_file = temp / "run1.txt";
  const pid_t pid = spawn_petal({"--state-dir", state.string(), "run", experiment.string(), "-j", "2"}, output_file);
  // Wait until `slow` is writing its output in its temp folder.
  bool writing = false;
  const auto deadline = Clock::now() + std::chrono::seconds(20);
  while (!writing && Clock::now() < deadline) {
    std::error_code ec;
    for (const auto& temp_entry : fs::directory_iterator(state / "cache" / "tmp", ec)) {
      writing = writing || (fs::exists(temp_entry.path() / "out" / "slow.txt") && fs::exists(pid_file));
    }
    if (!writing) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  REQUIRE_MESSAGE(writing, "stage slow never started: " << read_file(output_file));
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  REQUIRE(::kill(pid, SIGINT) == 0);
  int status = 0;
  REQUIRE_MESSAGE(wait_for_within(pid, std::chrono::seconds(15), &status), "petal did not stop after SIGINT");
  const std::string output = read_file(output_file);
  INFO(output);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 130);
  CHECK(output.find("slow") != std::string::npos);
  CHECK(output.find("interrupted") != std::string::npos);

  // Nothing committed for the stopped stage; the finished one is a complete entry; no temp left.
  CHECK_FALSE(fs::exists(entry_dir(state, keys.at("slow"))));
  const EntryCheck fast = check_entry(entry_dir(state, keys.at("fast")));
  CHECK_MESSAGE(fast.complete, fast.problem);
  CHECK(count_children(state / "cache" / "tmp") == 0);
  for (const auto& [key, check] : check_entries(state)) CHECK_MESSAGE(check.complete, key << ": " << check.problem);
  std::size_t unparseable = 0;
  std::map<std::string, std::string> states;
  stage_keys(state, experiment, &states);
  CHECK(states.at("fast") == "cached");
  CHECK(states.at("slow") == "stale");

  // The stage's command was stopped too (its shell is gone, not left writing).
  const pid_t shell = static_cast<pid_t>(std::atoi(read_file(pid_file).c_str()));
  REQUIRE(shell > 0);
  bool gone = false;
  for (int i = 0; i < 200 && !gone; ++i) {
    gone = ::kill(shell, 0) != 0 && errno == ESRCH;
    if (!gone) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  CHECK_MESSAGE(gone, "the shell of stage slow (pid " << shell << ") still runs after petal exited");

  // The run log says so, and a rerun completes, reusing `fast` and building `slow`.
  std::string rerun;
  const RunReport first = parse_run_output(output);
  const auto logged = run_log_records(state, first.run_id, &unparseable);
  CHECK(logged.count("slow") == 1);
  if (logged.count("slow")) CHECK(logged.at("slow") == "interrupted");
  REQUIRE_MESSAGE(run_petal(state, "run " + quote(experiment) + " -j 2", &rerun) == 0, rerun);
  const RunReport second = parse_run_output(rerun);
  CHECK(second.status.at("fast") == "cached");
  CHECK(second.status.at("slow") == "ran");
  const EntryCheck slow = check_entry(entry_dir(state, keys.at("slow")));
  CHECK_MESSAGE(slow.complete, slow.problem);
  const std::string slow_txt = read_file(entry_dir(state, keys.at("slow")) / "out" / "slow.txt");
  CHECK(std::count(slow_txt.begin(), slow_txt.end(), '\n') == 150);
  CHECK(unparseable == 0);
}
