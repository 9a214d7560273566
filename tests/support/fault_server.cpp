#include "tests/support/fault_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <stdexcept>

namespace petal::test {

FaultServer FaultServer::answering(Answer answer) { return FaultServer(false, std::move(answer)); }
FaultServer FaultServer::silent() { return FaultServer(true, {}); }

FaultServer::FaultServer(bool silent, Answer answer) : silent_(silent), answer_(std::move(answer)) {
  listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = 0;
  socklen_t length = sizeof address;
  if (listen_fd_ < 0 || ::bind(listen_fd_, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 ||
      ::listen(listen_fd_, 64) != 0 || ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
    throw std::runtime_error("FaultServer: cannot listen on 127.0.0.1");
  }
  port_ = ntohs(address.sin_port);
  thread_ = std::thread([this] { serve(); });
}

FaultServer::~FaultServer() {
  stop_ = true;
  thread_.join();
  ::close(listen_fd_);
  std::lock_guard<std::mutex> lock(held_mutex_);
  for (int fd : held_) ::close(fd);
}

void FaultServer::serve() {
  while (!stop_) {
    pollfd p{listen_fd_, POLLIN, 0};
    if (::poll(&p, 1, 50) <= 0) continue;  // wakes to look at stop_
    const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd >= 0) handle(fd);
  }
}

// Reads one request (headers, then Content-Length bytes of body) and answers it, or holds it.
void FaultServer::handle(int fd) {
  std::string request;
  char buffer[65536];
  std::size_t need = std::string::npos;
  while (!stop_) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 50) <= 0) continue;
    const ssize_t n = ::read(fd, buffer, sizeof buffer);
    if (n <= 0) break;
    request.append(buffer, static_cast<std::size_t>(n));
    const std::size_t end = request.find("\r\n\r\n");
    if (end == std::string::npos) continue;
    if (need == std::string::npos) {
      need = end + 4;
      const std::size_t cl = request.find("Content-Length: ");
      if (cl != std::string::npos && cl < end) need += std::strtoul(request.c_str() + cl + 16, nullptr, 10);
    }
    if (request.size() >= need) break;
  }
  ++requests_;
  if (silent_) {
    std::lock_guard<std::mutex> lock(held_mutex_);
    held_.push_back(fd);
    return;
  }
  const std::string reply = "HTTP/1.1 " + std::to_string(answer_.status) + " Fault\r\nContent-Type: " + answer_.content_type +
                            "\r\nContent-Length: " + std::to_string(answer_.body.size()) + "\r\nConnection: close\r\n\r\n" +
                            answer_.body;
  const ssize_t written = ::write(fd, reply.data(), reply.size());
  (void)written;
  ::close(fd);
}

}  // namespace petal::test
