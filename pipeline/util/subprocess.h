#pragma once
#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <vector>

namespace petal {

struct SubprocessSpec {
  std::vector<std::string> argv;                  // argv[0] is looked up in PATH when it has no '/'
  std::map<std::string, std::string> extra_env;   // added to (or replacing in) the inherited env
  std::filesystem::path working_dir;              // empty: inherit
  std::filesystem::path output_file;              // stdout and stderr go here; empty: inherit
};

struct SubprocessResult {
  int exit_code = -1;     // valid when !signalled
  int signal = 0;         // the signal that ended it, 0 if it exited
  bool cancelled = false; // we stopped it because `should_stop` said so
  std::string describe() const;  // "exit code 3", "killed by signal 9", "stopped on request"
};

// Runs a child in its own process group and waits for it. While waiting it polls `should_stop`;
// when that turns true the whole group gets SIGTERM, then SIGKILL after `grace_ms`. If petal dies,
// even by SIGKILL, a supervisor process kills the whole group, so no orphan (a shell's children
// included) keeps running or writing into a dead temp dir.
SubprocessResult run_subprocess(const SubprocessSpec& spec, const std::function<bool()>& should_stop,
                                int grace_ms = 5000);

}  // namespace petal
