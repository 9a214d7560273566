#pragma once
#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "pipeline/exec/executor.h"
#include "pipeline/sweep/sweep_state.h"

namespace petal::test {

namespace fs = std::filesystem;

// A fresh folder under the system temp dir, removed with everything in it on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const fs::path& path() const { return path_; }
  fs::path operator/(const std::string& name) const { return path_ / name; }
  // `text` with every "<this dir>/" removed, so messages can be compared exactly.
  std::string relative(std::string text) const;

 private:
  fs::path path_;
};

void write_file(const fs::path& path, const std::string& content);
// A small valid 24-bit BMP whose pixels depend on `seed` (distinct seeds, distinct files), for
// stages that decode images; petal's own tests do not link OpenCV to make them.
void write_bmp(const fs::path& path, int seed, int width = 16, int height = 16);
std::string read_file(const fs::path& path);

// Runs a shell command line, returning its exit code; stdout+stderr are captured into `output`.
int run_command(const std::string& command, std::string* output = nullptr);

// A static file server on 127.0.0.1 (Python's http.server) for download tests; stopped on
// destruction. `url(name)` is the address of a file below `root`.
class HttpServer {
 public:
  explicit HttpServer(const fs::path& root);
  ~HttpServer();
  std::string url(const std::string& name) const;

 private:
  int pid_ = -1;
  int port_ = 0;
};

// Loads `text` as <dir>/x.toml (with the test registry and `overrides`) and runs it with state in
// <dir>/state, quietly; returns the result and, by stage name, each outcome and out/ folder.
struct ExperimentRun {
  RunResult result;
  std::map<std::string, fs::path> out;
  std::map<std::string, StageOutcome> by_stage;
};
ExperimentRun run_experiment(const TempDir& dir, const std::string& text, std::vector<std::string> overrides = {});

// Runs `command` with /bin/sh in a new process group (so a kill reaches petal and its stages).
int spawn_in_process_group(const std::string& command);
// SIGKILLs that process group and reaps the shell.
void kill_process_group(int pid);
// Waits (up to `seconds`) until the sweep state under <state_dir>/sweeps satisfies `ready`;
// returns the state file, or an empty path on time-out.
fs::path wait_for_sweep_state(const fs::path& state_dir, const std::function<bool(const SweepState&)>& ready,
                              double seconds = 30);

// The built `petal` executable and the source tree, as configured by CMake.
std::string petal_binary();
fs::path source_dir();
std::string test_worker();  // a worker executable speaking petal-worker's protocol (no LibTorch)
// The shared datasets folder: $PETAL_DATASETS, else ../shared/datasets beside the repository.
fs::path datasets_dir();
// The committed output folder (.../out) of the newest cache entry built for the stage named
// `stage` under <state_dir>/cache/entries; empty when there is none.
fs::path newest_stage_output(const fs::path& state_dir, const std::string& stage);

// A registry with the built-in kinds plus test kinds:
//   "emit":   writes params.text to out/value.txt; params: text (string), sleep_ms (int), fail (bool)
//   "concat": concatenates its inputs' value.txt (in input-name order) plus params.text
//   "via-worker": like concat, but run in the test worker process (petal_test_worker)
// Each run of emit or concat appends one line to the file named by $PETAL_TEST_COUNTER (if set) so tests
// can count executions; sleep_ms lets scheduling tests observe parallelism.
const StageRegistry& test_registry();

}  // namespace petal::test
