#include "pipeline/util/file_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
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

// Whether the locked descriptor is still the file at `path` (not unlinked or replaced meanwhile).
bool still_at_path(int fd, const std::filesystem::path& path) {
  struct stat held {}, current {};
  if (::fstat(fd, &held) != 0 || ::stat(path.c_str(), &current) != 0) return false;
  return held.st_ino == current.st_ino && held.st_dev == current.st_dev;
}

// Opens `path` and flocks it with `operation`; -1 when a non-blocking attempt finds it taken.
// Retries when the file was deleted while we waited (see the class comment).
int lock_path(const std::filesystem::path& path, int operation) {
  for (;;) {
    const int fd = open_lock_file(path);
    int result;
    while ((result = ::flock(fd, operation)) != 0 && errno == EINTR) {
    }
    if (result != 0) {
      const int saved = errno;
      ::close(fd);
      if (saved == EWOULDBLOCK) return -1;
      throw PetalError("cannot lock " + path.string() + ": " + std::strerror(saved), {}, kExitEnvironment);
    }
    if (still_at_path(fd, path)) return fd;
    ::close(fd);
  }
}
}  // namespace

FileLock FileLock::acquire(const std::filesystem::path& path) { return FileLock(lock_path(path, LOCK_EX)); }

FileLock FileLock::acquire(const std::filesystem::path& path, const std::function<bool()>& should_stop) {
  if (!should_stop) return acquire(path);
  for (;;) {
    FileLock lock = try_acquire(path);
    if (lock.held() || should_stop()) return lock;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

FileLock FileLock::try_acquire(const std::filesystem::path& path) { return FileLock(lock_path(path, LOCK_EX | LOCK_NB)); }

FileLock FileLock::try_acquire_shared(const std::filesystem::path& path) {
  return FileLock(lock_path(path, LOCK_SH | LOCK_NB));
}

void FileLock::remove_and_release(const std::filesystem::path& path) {
  if (fd_ >= 0 && still_at_path(fd_, path)) ::unlink(path.c_str());
  release();
}

void FileLock::release() {
  if (fd_ >= 0) {
    ::close(fd_);  // closing the only descriptor drops the flock
    fd_ = -1;
  }
}

}  // namespace petal
