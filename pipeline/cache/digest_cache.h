#pragma once
#include <cstdint>
#include <filesystem>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

namespace petal {

struct FileDigest {
  std::string relative;  // '/'-separated, relative to the digested root ("" for a single file)
  std::uint64_t size = 0;
  std::string sha256;
};

struct TreeDigest {
  std::string digest;  // sha256 over the sorted (path, size, sha256) list
  std::vector<FileDigest> files;
  std::uint64_t total_size = 0;
  std::size_t rehashed = 0;  // files whose content had to be read (not answered by the stat cache)
};

// Content digests of files and folders outside the cache (a user's dataset folder), with a stat
// cache in the manner of git's index: a file whose (size, mtime, inode) is unchanged since it was
// hashed is not read again, so re-digesting an unchanged folder of 10k files costs only stats.
// Files modified in the last two seconds are never remembered, so a write that lands within the
// file system's timestamp granularity cannot hide behind an unchanged mtime.
class DigestCache {
 public:
  explicit DigestCache(std::filesystem::path store);

  // A regular file or a folder (recursively; names starting with '.' are skipped). Throws
  // PetalError (exit 3) when the path does not exist or cannot be read.
  TreeDigest digest(const std::filesystem::path& path);
  void save();  // writes the store atomically if anything changed; failures are ignored

 private:
  struct Entry {
    std::uint64_t size;
    std::int64_t mtime_ns;
    std::uint64_t inode;
    std::string sha256;
  };
  void load_locked();
  std::string file_digest_locked(const std::filesystem::path& absolute, std::uint64_t size, std::int64_t mtime_ns,
                                 std::uint64_t inode, std::size_t* rehashed);

  std::filesystem::path store_;
  std::mutex mutex_;
  bool loaded_ = false;
  bool dirty_ = false;
  std::unordered_map<std::string, Entry> entries_;
};

}  // namespace petal
