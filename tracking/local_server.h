#pragma once
#include <filesystem>
#include <string>

namespace petal {

// A local MLflow tracking server (sqlite backend store, local artifact store served through the
// server's artifact proxy) that petal starts on 127.0.0.1 and reuses across runs. Its state lives
// in one folder:
//   <dir>/mlflow.db   <dir>/artifacts/   <dir>/server.json (pid, port, url)   <dir>/server.log
// The server outlives the petal that started it (its own session) so the UI stays up; `stop()`
// ends it. Job execution (MLflow's background workers) is switched off: petal needs none of it.
class LocalMlflowServer {
 public:
  explicit LocalMlflowServer(std::filesystem::path dir);

  // Returns the URL of a healthy server, reusing the one recorded in server.json or starting a new
  // one (under a lock, so concurrent petals start one server). `port` 0 picks a free port.
  // Throws PetalError with the server log's tail when it does not come up within `timeout_s`.
  std::string ensure_running(int port = 0, int timeout_s = 120);
  void stop();  // stops the recorded server, if it runs

  static bool healthy(const std::string& url);
  // The `mlflow` executable: $PETAL_MLFLOW, `.venv/bin/mlflow` above the running binary, or PATH.
  static std::string mlflow_executable();

 private:
  std::filesystem::path dir_;
};

}  // namespace petal
