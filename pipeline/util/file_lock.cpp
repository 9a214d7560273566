#include "pipeline/util/file_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <thread>
#include <cstring>

#include "pipeline/util/error.h"

namespace petal {

FileLock::~FileLock() { release(); }

FileLock::FileLock(FileLock&& other) noexcept : fd_(other.fd_) { other.fd_ = -1; }

FileLock& FileLock::operator=(FileLock&& other) noexcept {
  if (this != &other) {
    release();
    fd_ = other.fd_;
    other.fd_ = -1;
  }
  return *this;
}

namespace {
int open_lock_file(const std::filesystem::path& path) {
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) {
    throw PetalError("cannot open lock file " + path.string() + ": " + std::strerror(errno), {},
                     kExitEnvironment);
  }
  return fd;
}
}  // namespace

FileLock FileLock::acquire(const std::filesystem::path& path) {
  const int fd = open_lock_file(path);
  while (::flock(fd, LOCK_EX) != 0) {
    if (errno == EINTR) continue;
    const int saved = errno;
    ::close(fd);
    throw PetalError("cannot lock " + path.string() + ": " + std::strerror(saved), {}, kExitEnvironment);
  }
  return FileLock(fd);
}

FileLock FileLock::acquire(const std::filesystem::path& path, const std::function<bool()>& should_stop) {
  if (!should_stop) return acquire(path);
  for (;;) {
    FileLock lock = try_acquire(path);
    if (lock.held() || should_stop()) return lock;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

FileLock FileLock::try_acquire(const std::filesystem::path& path) {
  const int fd = open_lock_file(path);
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    ::close(fd);
    return FileLock();
  }
  return FileLock(fd);
}

FileLock FileLock::try_acquire_shared(const std::filesystem::path& path) {
  const int fd = open_lock_file(path);
  if (::flock(fd, LOCK_SH | LOCK_NB) != 0) {
    ::close(fd);
    return FileLock();
  }
  return FileLock(fd);
}

void FileLock::release() {
  if (fd_ >= 0) {
    ::close(fd_);  // closing the only descriptor drops the flock
    fd_ = -1;
  }
}

}  // namespace petal
