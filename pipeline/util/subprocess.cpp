#include "pipeline/util/subprocess.h"

#include <fcntl.h>
#include <signal.h>
#include <poll.h>
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
  // The child is a small supervisor that leads the process group and starts the command inside
  // it. It watches a pipe whose write end only petal holds: when petal dies, even by SIGKILL, the
  // pipe reports EOF and the supervisor kills the whole group, grandchildren included.
  int death_pipe[2];
  if (::pipe2(death_pipe, O_CLOEXEC) != 0) {
    if (output_fd >= 0) ::close(output_fd);
    throw PetalError(std::string("cannot create a pipe: ") + std::strerror(errno), {}, kExitEnvironment);
  }
  const int null_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  const pid_t pid = ::fork();
  if (pid < 0) {
    if (output_fd >= 0) ::close(output_fd);
    ::close(death_pipe[0]);
    ::close(death_pipe[1]);
    if (null_fd >= 0) ::close(null_fd);
    throw PetalError(std::string("cannot start ") + spec.argv[0] + ": " + std::strerror(errno), {},
                     kExitEnvironment);
  }
  if (pid == 0) {
    // Only async-signal-safe calls from here on: petal is multi-threaded.
    ::setpgid(0, 0);
    if (output_fd >= 0) {
      ::dup2(output_fd, STDOUT_FILENO);
      ::dup2(output_fd, STDERR_FILENO);
    }
    if (null_fd >= 0) ::dup2(null_fd, STDIN_FILENO);
    ::dup2(death_pipe[0], 3);
    ::fcntl(3, F_SETFD, FD_CLOEXEC);
    // Drop every other descriptor, in particular other stages' death-pipe write ends.
    if (::close_range(4, ~0U, 0) != 0) {
      for (int fd = 4; fd < 4096; ++fd) ::close(fd);
    }
    struct sigaction ignore {};
    ignore.sa_handler = SIG_IGN;
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    for (int sig : {SIGINT, SIGTERM, SIGHUP}) ::sigaction(sig, &ignore, nullptr);
    const pid_t command = ::fork();
    if (command == 0) {
      for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGPIPE}) ::sigaction(sig, &dfl, nullptr);
      if (!spec.working_dir.empty() && ::chdir(spec.working_dir.c_str()) != 0) ::_exit(127);
      ::execvpe(argv[0], argv.data(), envp.data());
      const char* message = "petal: cannot execute command\n";
      (void)!::write(STDERR_FILENO, message, std::strlen(message));
      ::_exit(127);
    }
    if (command < 0) ::_exit(127);
    for (;;) {
      int status = 0;
      if (::waitpid(command, &status, WNOHANG) == command) {
        if (WIFEXITED(status)) ::_exit(WEXITSTATUS(status));
        const int sig = WTERMSIG(status);
        ::sigaction(sig, &dfl, nullptr);
        ::kill(::getpid(), sig);
        ::_exit(128 + sig);
      }
      struct pollfd watch {3, POLLIN, 0};
      if (::poll(&watch, 1, 50) > 0 && (watch.revents & (POLLIN | POLLHUP | POLLERR))) {
        ::kill(0, SIGKILL);  // petal is gone: take the whole group down, ourselves included
        ::_exit(137);
      }
    }
  }
  ::close(death_pipe[0]);
  if (null_fd >= 0) ::close(null_fd);
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
  ::close(death_pipe[1]);
  return result;
}

}  // namespace petal
