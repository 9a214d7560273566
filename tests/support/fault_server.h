#pragma once
#include <atomic>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace petal::test {

// A misbehaving "tracking server" on 127.0.0.1 for fault-injection tests. It reads each request
// and then, by its mode, answers every request with one fixed HTTP answer (401, 403, 404, a 200
// with an HTML page, ...) or never answers at all while keeping the connection open (a server that
// accepts and hangs). Counts the requests it received. Stopped (connections closed) on destruction.
class FaultServer {
 public:
  struct Answer {
    int status = 200;
    std::string content_type = "text/html";
    std::string body = "<html><body><h1>Sign in</h1></body></html>";
  };
  static FaultServer answering(Answer answer);
  static FaultServer silent();

  FaultServer(FaultServer&& other) = delete;
  ~FaultServer();

  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  int requests() const { return requests_.load(); }

 private:
  FaultServer(bool silent, Answer answer);
  void serve();
  void handle(int fd);

  bool silent_;
  Answer answer_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> requests_{0};
  std::mutex held_mutex_;
  std::vector<int> held_;  // connections a silent server keeps open
  std::thread thread_;
};

}  // namespace petal::test
