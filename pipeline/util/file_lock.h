#pragma once
#include <filesystem>
#include <functional>

namespace petal {

// An exclusive advisory lock (flock) on a lock file. The kernel drops it when the holder dies, so a
// SIGKILLed petal never leaves a stale lock. The descriptor is close-on-exec: child processes (stage
// commands, workers) never inherit, and so never prolong, a lock.
//
// Lock files may be deleted (gc does, for entries it removes): a lock counts as held only when the
// locked inode is still the one at `path`. Whoever waited on a file that was unlinked meanwhile
// opens the new one and waits again, so two holders never meet on two inodes of one path.
class FileLock {
 public:
  FileLock() = default;
  ~FileLock();
  FileLock(FileLock&& other) noexcept;
  FileLock& operator=(FileLock&& other) noexcept;
  FileLock(const FileLock&) = delete;
  FileLock& operator=(const FileLock&) = delete;

  static FileLock acquire(const std::filesystem::path& path);      // blocks; throws on I/O errors
  // Waits for the lock, giving up (returning an unheld lock) once `should_stop` turns true.
  static FileLock acquire(const std::filesystem::path& path, const std::function<bool()>& should_stop);
  static FileLock try_acquire(const std::filesystem::path& path);  // !held() when someone else holds it
  // A shared lock: any number of holders at once, none while an exclusive one is held (and no
  // exclusive one while any shared one is). !held() when an exclusive holder has it.
  static FileLock try_acquire_shared(const std::filesystem::path& path);

  bool held() const { return fd_ >= 0; }
  void release();
  // Deletes the lock file, then releases the lock: the one safe way to remove a lock file.
  void remove_and_release(const std::filesystem::path& path);

 private:
  explicit FileLock(int fd) : fd_(fd) {}
  int fd_ = -1;
};

}  // namespace petal
