#include "pipeline/util/net.h"
#include "tracking/local_server.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "pipeline/util/error.h"
#include "pipeline/util/file_lock.h"
#include "pipeline/util/fs.h"
#include "tracking/http_client.h"

namespace petal {

namespace {


std::string log_tail(const fs::path& file) {
  std::ifstream in(file);
  std::deque<std::string> lines;
  for (std::string line; std::getline(in, line);) {
    lines.push_back(line);
    if (lines.size() > 15) lines.pop_front();
  }
  std::string out;
  for (const auto& l : lines) out += "\n    " + l;
  return out;
}

bool process_alive(int pid) { return pid > 0 && ::kill(pid, 0) == 0; }

}  // namespace

LocalMlflowServer::LocalMlflowServer(fs::path dir) : dir_(fs::absolute(std::move(dir))) {}

bool LocalMlflowServer::healthy(const std::string& url) {
  HttpSettings settings;
  settings.base_url = url;
  settings.max_attempts = 1;
  settings.timeout_ms = 2000;
  try {
    HttpClient client(settings);
    const HttpResponse r = client.get("/health");
    return r.status == 200;
  } catch (const PetalError&) {
    return false;
  }
}

std::string LocalMlflowServer::mlflow_executable() {
  if (const char* path = std::getenv("PETAL_MLFLOW"); path && *path) return path;
  std::error_code ec;
  const fs::path self = fs::read_symlink("/proc/self/exe", ec);
  for (fs::path dir = self.parent_path(); !dir.empty() && dir != dir.root_path(); dir = dir.parent_path()) {
    const fs::path candidate = dir / ".venv/bin/mlflow";
    if (fs::exists(candidate, ec)) return candidate.string();
  }
  return "mlflow";
}

std::string LocalMlflowServer::ensure_running(int port, int timeout_s) {
  fs::create_directories(dir_ / "artifacts");
  FileLock lock = FileLock::acquire(dir_ / "server.lock");
  const fs::path record = dir_ / "server.json";
  try {
    const auto info = nlohmann::json::parse(read_text_file(record));
    const std::string url = info.at("url").get<std::string>();
    if ((port == 0 || info.at("port").get<int>() == port) && healthy(url)) return url;
  } catch (const std::exception&) {
    // no usable record: start a server
  }
  if (port == 0) port = free_loopback_port();
  const std::string url = "http://127.0.0.1:" + std::to_string(port);
  const std::string executable = mlflow_executable();
  const std::string backend = "sqlite:///" + (dir_ / "mlflow.db").string();
  const std::string artifacts = (dir_ / "artifacts").string();
  const std::string port_text = std::to_string(port);
  const fs::path log = dir_ / "server.log";

  const pid_t pid = ::fork();
  if (pid < 0) throw PetalError("cannot start the MLflow server: fork failed", {}, kExitEnvironment);
  if (pid == 0) {
    ::setsid();  // its own session: Ctrl-C in petal's terminal does not stop the UI
    const int out = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    const int in = ::open("/dev/null", O_RDONLY);
    ::dup2(in, 0);
    ::dup2(out, 1);
    ::dup2(out, 2);
    ::setenv("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false", 1);
    ::chdir(dir_.c_str());
    ::execlp(executable.c_str(), executable.c_str(), "server", "--host", "127.0.0.1", "--port", port_text.c_str(),
             "--backend-store-uri", backend.c_str(), "--artifacts-destination", artifacts.c_str(), "--workers", "1",
             static_cast<char*>(nullptr));
    const char* message = "petal: cannot execute the mlflow executable (set PETAL_MLFLOW or run scripts/setup.sh)\n";
    (void)!::write(2, message, std::strlen(message));
    ::_exit(127);
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_s);
  while (std::chrono::steady_clock::now() < deadline) {
    int status = 0;
    if (::waitpid(pid, &status, WNOHANG) == pid) {
      throw PetalError("the MLflow server (" + executable + ") exited during start-up; its log " + log.string() +
                           " ends with:" + log_tail(log),
                       {}, kExitEnvironment);
    }
    if (healthy(url)) {
      write_file_atomically(record, nlohmann::json{{"pid", pid}, {"port", port}, {"url", url}}.dump() + "\n");
      return url;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  ::kill(-pid, SIGTERM);
  throw PetalError("the MLflow server did not answer on " + url + " within " + std::to_string(timeout_s) +
                       " s; its log " + log.string() + " ends with:" + log_tail(log),
                   {}, kExitEnvironment);
}

void LocalMlflowServer::stop() {
  try {
    const auto info = nlohmann::json::parse(read_text_file(dir_ / "server.json"));
    const int pid = info.at("pid").get<int>();
    if (process_alive(pid)) {
      ::kill(-pid, SIGTERM);  // the whole session: uvicorn and its children
      for (int i = 0; i < 100 && process_alive(pid); ++i) {
        ::waitpid(pid, nullptr, WNOHANG);
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
      if (process_alive(pid)) ::kill(-pid, SIGKILL);
      ::waitpid(pid, nullptr, WNOHANG);
    }
    std::error_code ec;
    fs::remove(dir_ / "server.json", ec);
  } catch (const std::exception&) {
  }
}

}  // namespace petal
