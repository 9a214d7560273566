// Basic auth against `mlflow server --app-name basic-auth` (needs `mlflow[auth]`, i.e. Flask-WTF,
// in .venv: scripts/requirements.txt). The test starts its own auth-enabled server; the shared test
// server has no auth.
#include <doctest/doctest.h>

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
#include <optional>
#include <random>
#include <thread>

#include "pipeline/util/net.h"
#include "tests/support/test_support.h"
#include "tracking/local_server.h"
#include "tracking/mlflow_client.h"

using namespace petal;
using namespace petal::mlflow;

namespace {


std::string random_text(std::size_t length) {
  static const char* alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
  std::random_device device;
  std::string out;
  for (std::size_t i = 0; i < length; ++i) out += alphabet[device() % 62];
  return out;
}

std::string tail_of(const std::filesystem::path& file) {
  std::ifstream in(file);
  std::deque<std::string> lines;
  for (std::string line; std::getline(in, line);) {
    lines.push_back(line);
    if (lines.size() > 20) lines.pop_front();
  }
  std::string out;
  for (const auto& l : lines) out += "\n  " + l;
  return out;
}

// An auth-enabled MLflow server of its own (sqlite stores in a temp dir, admin user created on the
// first start from the config file), stopped with its whole process group on destruction.
class AuthServer {
 public:
  std::string admin_user = "petal-admin";
  std::string admin_password = "pw-" + random_text(20);  // MLflow wants at least 12 characters

  AuthServer() {
    const int port = free_loopback_port();
    url_ = "http://127.0.0.1:" + std::to_string(port);
    const std::string config = (dir_ / "basic_auth.ini").string();
    // The auth app reads database_uri and the bootstrap admin from this file; there is no default
    // admin password in MLflow 3.17.
    test::write_file(config, "[mlflow]\n"
                             "default_permission = READ\n"
                             "database_uri = sqlite:///" + (dir_ / "auth.db").string() + "\n"
                             "admin_username = " + admin_user + "\n"
                             "admin_password = " + admin_password + "\n"
                             "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n");
    const std::string mlflow = (test::source_dir() / ".venv/bin/mlflow").string();
    const std::string backend = "sqlite:///" + (dir_ / "mlflow.db").string();
    const std::string artifacts = (dir_ / "artifacts").string();
    const std::string port_text = std::to_string(port);
    const std::string secret = random_text(32);
    log_ = dir_ / "server.log";

    pid_ = ::fork();
    REQUIRE(pid_ >= 0);
    if (pid_ == 0) {
      ::setsid();  // its own process group, so the uvicorn worker is stopped with it
      const int out = ::open(log_.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
      const int in = ::open("/dev/null", O_RDONLY);
      ::dup2(in, 0);
      ::dup2(out, 1);
      ::dup2(out, 2);
      ::setenv("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false", 1);
      ::setenv("MLFLOW_AUTH_CONFIG_PATH", config.c_str(), 1);
      ::setenv("MLFLOW_FLASK_SERVER_SECRET_KEY", secret.c_str(), 1);  // required by the auth app (CSRF)
      ::unsetenv("MLFLOW_AUTH_ADMIN_USERNAME");  // would override the config file
      ::unsetenv("MLFLOW_AUTH_ADMIN_PASSWORD");
      ::unsetenv("MLFLOW_TRACKING_URI");
      if (::chdir(dir_.path().c_str()) != 0) ::_exit(126);
      ::execl(mlflow.c_str(), mlflow.c_str(), "server", "--app-name", "basic-auth", "--host", "127.0.0.1", "--port",
              port_text.c_str(), "--backend-store-uri", backend.c_str(), "--artifacts-destination", artifacts.c_str(),
              "--workers", "1", static_cast<char*>(nullptr));
      const char* message = "cannot execute .venv/bin/mlflow\n";
      (void)!::write(2, message, std::strlen(message));
      ::_exit(127);
    }
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(180);
    while (!LocalMlflowServer::healthy(url_)) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        ::kill(-pid_, SIGKILL);
        pid_ = -1;
        FAIL("the basic-auth MLflow server exited during start-up (is mlflow[auth] installed? "
             "run scripts/setup.sh); its log ends with:"
             << tail_of(log_));
      }
      if (std::chrono::steady_clock::now() > deadline) {
        stop();
        FAIL("the basic-auth MLflow server did not answer /health within 180 s; its log ends with:" << tail_of(log_));
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
  }

  ~AuthServer() { stop(); }
  AuthServer(const AuthServer&) = delete;
  AuthServer& operator=(const AuthServer&) = delete;

  const std::string& url() const { return url_; }

  HttpSettings settings(const std::string& user, const std::string& password, const std::string& token = "") const {
    HttpSettings s;
    s.base_url = url_;
    s.username = user;
    s.password = password;
    s.token = token;
    s.max_attempts = 2;
    s.initial_backoff_ms = 20;
    return s;
  }

 private:
  void stop() {
    if (pid_ <= 0) return;
    const int group = pid_;
    ::kill(-group, SIGTERM);
    for (int i = 0; i < 200; ++i) {  // up to 10 s
      if (::waitpid(pid_, nullptr, WNOHANG) == pid_) {
        pid_ = -1;
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    if (pid_ > 0) {
      ::kill(-pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    if (::kill(-group, 0) == 0) ::kill(-group, SIGKILL);  // a straggling uvicorn worker
    pid_ = -1;
  }

  test::TempDir dir_;
  std::filesystem::path log_;
  std::string url_;
  int pid_ = -1;
};

// Sets (or, for nullptr, unsets) environment variables for one scope, restoring them afterwards.
class ScopedEnv {
 public:
  ScopedEnv(std::initializer_list<std::pair<const char*, const char*>> values) {
    for (const auto& [name, value] : values) {
      const char* old = std::getenv(name);
      saved_.push_back({name, old ? std::optional<std::string>(old) : std::nullopt});
      if (value) ::setenv(name, value, 1);
      else ::unsetenv(name);
    }
  }
  ~ScopedEnv() {
    for (const auto& [name, value] : saved_) {
      if (value) ::setenv(name.c_str(), value->c_str(), 1);
      else ::unsetenv(name.c_str());
    }
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  std::vector<std::pair<std::string, std::optional<std::string>>> saved_;
};

}  // namespace

TEST_CASE("auth: basic auth from MLflow's environment variables - wrong credentials and tokens are a clear 401") {
  AuthServer server;

  // Without credentials: 401 with a hint at the variables.
  {
    ScopedEnv env({{"MLFLOW_TRACKING_USERNAME", nullptr}, {"MLFLOW_TRACKING_PASSWORD", nullptr},
                   {"MLFLOW_TRACKING_TOKEN", nullptr}});
    Client anonymous(server.url());
    try {
      anonymous.ensure_experiment("nobody");
      FAIL("expected a 401");
    } catch (const MlflowError& e) {
      CHECK(e.status() == 401);
      CHECK(std::string(e.what()).find("MLFLOW_TRACKING_USERNAME/MLFLOW_TRACKING_PASSWORD") != std::string::npos);
    }
  }

  // The admin's credentials from the environment: the client works.
  std::string run_id;
  {
    ScopedEnv env({{"MLFLOW_TRACKING_USERNAME", server.admin_user.c_str()},
                   {"MLFLOW_TRACKING_PASSWORD", server.admin_password.c_str()},
                   {"MLFLOW_TRACKING_TOKEN", nullptr}});
    const HttpSettings settings = HttpSettings::from_environment(server.url() + "/");
    CHECK(settings.username == server.admin_user);
    CHECK(settings.password == server.admin_password);
    CHECK(settings.base_url == server.url());
    Client client(server.url());
    const std::string experiment = client.ensure_experiment("authorised");
    CHECK(client.ensure_experiment("authorised") == experiment);
    const RunInfo run = client.create_run(experiment, "with-auth", 1700000000000, {{"who", "admin"}});
    client.log_batch(run.run_id, {{"loss", 0.5, 1700000000001, 0}}, {{"lr", "0.1"}});
    client.update_run(run.run_id, "FINISHED", 1700000002000);
    const Run back = client.get_run(run.run_id);
    CHECK(back.info.status == "FINISHED");
    CHECK(back.params.at("lr") == "0.1");
    CHECK(back.tags.at("who") == "admin");
    run_id = run.run_id;
  }

  // A wrong password: a clear 401 that says what to set and never shows the password.
  {
    const std::string wrong = "not-the-password-" + random_text(8);
    ScopedEnv env({{"MLFLOW_TRACKING_USERNAME", server.admin_user.c_str()},
                   {"MLFLOW_TRACKING_PASSWORD", wrong.c_str()},
                   {"MLFLOW_TRACKING_TOKEN", nullptr}});
    Client client(server.url());
    try {
      client.get_run(run_id);
      FAIL("expected a 401");
    } catch (const MlflowError& e) {
      const std::string message = e.what();
      CAPTURE(message);
      CHECK(e.status() == 401);
      CHECK(e.error_code() == "HTTP_401");
      CHECK(message.find("HTTP 401") != std::string::npos);
      CHECK(message.find("set MLFLOW_TRACKING_USERNAME/MLFLOW_TRACKING_PASSWORD or MLFLOW_TRACKING_TOKEN") !=
            std::string::npos);
      CHECK(message.find(wrong) == std::string::npos);
      CHECK(message.find(server.admin_password) == std::string::npos);
      CHECK(message.find("<") == std::string::npos);
    }
    // An unknown user, and a password written into the URL, are no different.
    Client stranger(server.settings("mallory", server.admin_password));
    CHECK_THROWS_WITH_AS(stranger.create_experiment("x"), doctest::Contains("HTTP 401"), MlflowError);
    const std::string with_userinfo = "http://" + server.admin_user + ":" + wrong + "@" + server.url().substr(7);
    HttpSettings in_url = server.settings("", "");
    in_url.base_url = with_userinfo;
    try {
      Client(in_url).get_run(run_id);
      FAIL("expected a 401");
    } catch (const MlflowError& e) {
      CHECK(e.status() == 401);
      CHECK(std::string(e.what()).find(wrong) == std::string::npos);
      CHECK(std::string(e.what()).find("http://***@127.0.0.1:") != std::string::npos);
    }
  }

  // A bearer token (MLFLOW_TRACKING_TOKEN) is sent as `Authorization: Bearer`; the basic-auth app
  // checks Basic only, so it answers 401 — an error, not a crash.
  {
    ScopedEnv env({{"MLFLOW_TRACKING_USERNAME", nullptr}, {"MLFLOW_TRACKING_PASSWORD", nullptr},
                   {"MLFLOW_TRACKING_TOKEN", "tok-1234567890"}});
    const HttpSettings settings = HttpSettings::from_environment(server.url());
    CHECK(settings.token == "tok-1234567890");
    Client client(settings);
    try {
      client.get_run(run_id);
      FAIL("expected a 401");
    } catch (const MlflowError& e) {
      CHECK(e.status() == 401);
      CHECK(std::string(e.what()).find("tok-1234567890") == std::string::npos);
    }
  }

  // Credentials given directly (no environment) work the same way, also for artifacts.
  Client direct(server.settings(server.admin_user, server.admin_password));
  const Run run = direct.get_run(run_id);
  test::TempDir dir;
  test::write_file(dir / "note.txt", "behind auth\n");
  direct.upload_artifact(run.info, dir / "note.txt");
  direct.download_artifact(run.info, "note.txt", dir / "back/note.txt");
  CHECK(test::read_file(dir / "back/note.txt") == "behind auth\n");
  Client no_password(server.settings(server.admin_user, "wrong-password-123"));
  CHECK_THROWS_WITH_AS(no_password.download_artifact(run.info, "note.txt", dir / "back/again.txt"),
                       doctest::Contains("HTTP 401"), MlflowError);
  CHECK_FALSE(std::filesystem::exists(dir / "back/again.txt"));
}
