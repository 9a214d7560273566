#pragma once
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "pipeline/cache/manifest.h"
#include "pipeline/util/file_lock.h"

namespace petal {

enum class EntryState { Committed, Missing, Damaged };

struct CacheLookup {
  EntryState state = EntryState::Missing;
  std::string problem;              // for Damaged: what is wrong, naming the file
  std::optional<Manifest> manifest; // for Committed
};

struct CacheEntryInfo {
  std::string key;
  std::string stage;
  std::uint64_t size = 0;
  std::int64_t last_used_ms = 0;
};

// The content-addressed store of stage outputs, laid out as
//   <root>/entries/<k0k1>/<key>/{manifest.json, out/, stage.log, used}
//   <root>/tmp/<key>.<unique>/       entries being built (never read)
//   <root>/locks/<key>.lock          one flock per key: at most one builder per key at a time
//   <root>/trash/                    damaged or collected entries on their way out
//   <root>/resume/<key>/             checkpoints of a build that was interrupted, until it commits
// Invariant: an entry under entries/ appeared there by one atomic rename of a complete, fsync'd
// folder whose manifest was written last; nothing writes inside it afterwards except `used`.
class StageCache {
 public:
  explicit StageCache(std::filesystem::path root);

  const std::filesystem::path& root() const { return root_; }
  std::filesystem::path entry_dir(const std::string& key) const;
  std::filesystem::path out_dir(const std::string& key) const { return entry_dir(key) / "out"; }
  // <root>/resume/<key>: checkpoints of an unfinished build of `key` (StageContext::resume_dir).
  // Created by the stage that uses it; only the holder of the key's lock writes there.
  std::filesystem::path resume_dir(const std::string& key) const { return root_ / "resume" / key; }
  void remove_resume_dir(const std::string& key) const;  // after a commit; errors are ignored

  // The cheap check compares each file's size and mtime with the manifest; `verify` re-hashes.
  CacheLookup lookup(const std::string& key, bool verify) const;

  // An entry under construction: holds the key's lock and a private temp folder.
  class Build {
   public:
    ~Build();  // discards the temp folder unless committed
    const std::filesystem::path& out_dir() const { return out_dir_; }
    const std::filesystem::path& log_file() const { return log_file_; }
    // Hashes the outputs, writes the manifest, fsyncs and renames into place. Returns the manifest.
    Manifest commit(Manifest manifest);

   private:
    friend class StageCache;
    Build(const StageCache& cache, std::string key, FileLock lock);
    const StageCache& cache_;
    std::string key_;
    FileLock lock_;
    std::filesystem::path temp_dir_, out_dir_, log_file_;
    bool committed_ = false;
  };

  // Blocks until no other process builds `key`, then prepares a temp folder. The caller should
  // look the key up again: another process may have committed it meanwhile.
  // Returns nullptr if `should_stop` turned true while waiting.
  std::unique_ptr<Build> begin(const std::string& key, const std::function<bool()>& should_stop = {}) const;

  // Moves a damaged entry out of the way (to trash, then deletes it). Call while holding the
  // key's Build, so no one reads it concurrently from this cache's own builders.
  void discard(const std::string& key) const;

  void touch(const std::string& key) const;  // marks the entry as used now (LRU for gc)

  std::vector<CacheEntryInfo> entries() const;
  // Removes temp folders and trash left by killed processes (those whose key is not locked), and
  // resume folders of keys that are committed or were last touched more than a week ago, and lock
  // files of keys with nothing left.
  std::size_t remove_stale_temps() const;
  // Deletes an entry if no one is building it right now; false if it is locked.
  // Its lock file goes too (unless the key still has checkpoints).
  bool remove_if_unlocked(const std::string& key) const;

 private:
  std::filesystem::path lock_file(const std::string& key) const;
  void ensure_layout() const;
  std::size_t remove_orphan_locks() const;
  std::filesystem::path root_;
};

}  // namespace petal
