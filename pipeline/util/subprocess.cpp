#include "pipeline/util/subprocess.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <thread>

#include "pipeline/util/error.h"

extern char** environ;

namespace petal {

std::string SubprocessResult::describe() const {
  if (cancelled) return "stopped on request";
  if (signal != 0) return std::string("killed by signal ") + std::to_string(signal) + " (" + strsignal(signal) + ")";
  return "exit code " + std::to_string(exit_code);
}

namespace {
std::vector<std::string> build_environment(const std::map<std::string, std::string>& extra) {
  std::vector<std::string> env;
  for (char** e = environ; *e; ++e) {
    const std::string entry(*e);
    const std::string name = entry.substr(0, entry.find('='));
    if (extra.count(name) == 0) env.push_back(entry);
  }
  for (const auto& [name, value] : extra) env.push_back(name + "=" + value);
  return env;
}
}  // namespace

SubprocessResult run_subprocess(const SubprocessSpec& spec, const std::function<bool()>& should_stop,
                                int grace_ms) {
  if (spec.argv.empty()) throw std::invalid_argument("run_subprocess: empty argv");
  // Everything the child needs is prepared before fork: after fork only async-signal-safe calls.
  std::vector<std::string> env_strings = build_environment(spec.extra_env);
  std::vector<char*> envp;
  for (auto& s : env_strings) envp.push_back(s.data());
  envp.push_back(nullptr);
  std::vector<std::string> args = spec.argv;
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);

  int output_fd = -1;
  if (!spec.output_file.empty()) {
    output_fd = ::open(spec.output_file.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (output_fd < 0) {
      throw PetalError("cannot create " + spec.output_file.string() + ": " + std::strerror(errno), {},
                       kExitEnvironment);
    }
  }
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) {
    if (output_fd >= 0) ::close(output_fd);
    throw PetalError(std::string("cannot start ") + spec.argv[0] + ": " + std::strerror(errno), {},
                     kExitEnvironment);
  }
  if (pid == 0) {
    ::setpgid(0, 0);
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);  // the parent died before prctl took effect
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    ::sigaction(SIGINT, &dfl, nullptr);
    ::sigaction(SIGTERM, &dfl, nullptr);
    ::sigaction(SIGHUP, &dfl, nullptr);
    if (output_fd >= 0) {
      ::dup2(output_fd, STDOUT_FILENO);
      ::dup2(output_fd, STDERR_FILENO);
    }
    const int null_fd = ::open("/dev/null", O_RDONLY);
    if (null_fd >= 0) ::dup2(null_fd, STDIN_FILENO);
    if (!spec.working_dir.empty() && ::chdir(spec.working_dir.c_str()) != 0) ::_exit(127);
    ::execvpe(argv[0], argv.data(), envp.data());
    const char* message = "petal: cannot execute command\n";
    (void)!::write(STDERR_FILENO, message, std::strlen(message));
    ::_exit(127);
  }
  if (output_fd >= 0) ::close(output_fd);
  ::setpgid(pid, pid);  // also from the parent, so killpg works even before the child ran

  SubprocessResult result;
  auto stop_requested_at = std::chrono::steady_clock::time_point{};
  bool term_sent = false, kill_sent = false;
  for (;;) {
    int status = 0;
    const pid_t done = ::waitpid(pid, &status, WNOHANG);
    if (done == pid) {
      if (WIFEXITED(status)) result.exit_code = WEXITSTATUS(status);
      if (WIFSIGNALED(status)) result.signal = WTERMSIG(status);
      break;
    }
    if (done < 0 && errno != EINTR) break;
    if (!term_sent && should_stop && should_stop()) {
      ::killpg(pid, SIGTERM);
      term_sent = true;
      result.cancelled = true;
      stop_requested_at = std::chrono::steady_clock::now();
    }
    if (term_sent && !kill_sent &&
        std::chrono::steady_clock::now() - stop_requested_at > std::chrono::milliseconds(grace_ms)) {
      ::killpg(pid, SIGKILL);
      kill_sent = true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return result;
}

}  // namespace petal
