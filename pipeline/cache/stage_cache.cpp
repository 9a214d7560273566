#include "pipeline/cache/stage_cache.h"

#include <chrono>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <set>

#include "pipeline/util/error.h"
#include "pipeline/util/fs.h"
#include "pipeline/util/sha256.h"

namespace petal {

using nlohmann::json;

StageCache::StageCache(fs::path root) : root_(std::move(root)) {}

fs::path StageCache::entry_dir(const std::string& key) const {
  return root_ / "entries" / key.substr(0, 2) / key;
}

fs::path StageCache::lock_file(const std::string& key) const { return root_ / "locks" / (key + ".lock"); }

void StageCache::ensure_layout() const {
  for (const char* sub : {"entries", "tmp", "locks", "trash"}) {
    std::error_code ec;
    fs::create_directories(root_ / sub, ec);
    if (ec) {
      throw PetalError("cannot create cache folder " + (root_ / sub).string() + ": " + ec.message() +
                           "; set PETAL_HOME to a writable folder",
                       {}, kExitEnvironment);
    }
  }
}

CacheLookup StageCache::lookup(const std::string& key, bool verify) const {
  CacheLookup result;
  const fs::path dir = entry_dir(key);
  const fs::path manifest_path = dir / "manifest.json";
  if (!stat_path(dir)) return result;  // Missing
  Manifest manifest;
  try {
    manifest = Manifest::from_json(json::parse(read_text_file(manifest_path)));
  } catch (const std::exception& e) {
    result.state = EntryState::Damaged;
    result.problem = "manifest.json is missing or unreadable";
    return result;
  }
  if (manifest.key != key) {
    result.state = EntryState::Damaged;
    result.problem = "manifest.json belongs to another key";
    return result;
  }
  const fs::path out = dir / "out";
  for (const auto& file : manifest.files) {
    const fs::path path = out / file.path;
    const auto st = stat_path(path);
    std::string problem;
    if (!st || !st->is_regular) problem = "is missing";
    else if (st->size != file.size) problem = "has size " + std::to_string(st->size) + ", expected " + std::to_string(file.size);
    else if (st->mtime_ns != file.mtime_ns) problem = "was modified after it was cached";
    else if (verify && sha256_file(path) != file.sha256) problem = "has different content (sha256 mismatch)";
    if (!problem.empty()) {
      result.state = EntryState::Damaged;
      result.problem = "out/" + file.path + " " + problem;
      return result;
    }
  }
  if (verify) {
    std::size_t present = 0;
    std::error_code ec;
    for (auto it = fs::recursive_directory_iterator(out, ec); !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
      if (it->is_regular_file()) ++present;
    }
    if (present != manifest.files.size()) {
      result.state = EntryState::Damaged;
      result.problem = "out/ holds " + std::to_string(present) + " files, the manifest lists " +
                       std::to_string(manifest.files.size());
      return result;
    }
  }
  result.state = EntryState::Committed;
  result.manifest = std::move(manifest);
  return result;
}

StageCache::Build::Build(const StageCache& cache, std::string key, FileLock lock)
    : cache_(cache), key_(std::move(key)), lock_(std::move(lock)) {
  temp_dir_ = cache_.root_ / "tmp" / unique_name(key_);
  out_dir_ = temp_dir_ / "out";
  log_file_ = temp_dir_ / "stage.log";
  std::error_code ec;
  fs::create_directories(out_dir_, ec);
  if (ec) throw PetalError("cannot create " + out_dir_.string() + ": " + ec.message(), {}, kExitEnvironment);
}

StageCache::Build::~Build() {
  if (!committed_) remove_tree_quietly(temp_dir_);
}

Manifest StageCache::Build::commit(Manifest manifest) {
  manifest.key = key_;
  manifest.files = scan_output_files(out_dir_);
  manifest.total_size = 0;
  for (const auto& f : manifest.files) manifest.total_size += f.size;
  // Contents first, manifest last, then one rename: a kill at any point leaves either a temp
  // folder (never read) or a complete entry.
  fsync_tree(temp_dir_);
  write_file_atomically(temp_dir_ / "manifest.json", manifest.to_json().dump(1) + "\n");
  const fs::path target = cache_.entry_dir(key_);
  std::error_code ec;
  fs::create_directories(target.parent_path(), ec);
  if (::rename(temp_dir_.c_str(), target.c_str()) != 0) {
    throw PetalError("cannot commit cache entry " + target.string() + ": " + std::strerror(errno), {},
                     kExitEnvironment);
  }
  committed_ = true;
  fsync_path(target.parent_path());
  return manifest;
}

std::unique_ptr<StageCache::Build> StageCache::begin(const std::string& key,
                                                    const std::function<bool()>& should_stop) const {
  ensure_layout();
  FileLock lock = FileLock::acquire(lock_file(key), should_stop);
  if (!lock.held()) return nullptr;
  return std::unique_ptr<Build>(new Build(*this, key, std::move(lock)));
}

void StageCache::discard(const std::string& key) const {
  ensure_layout();
  const fs::path dir = entry_dir(key);
  const fs::path trash = root_ / "trash" / unique_name(key);
  if (::rename(dir.c_str(), trash.c_str()) == 0) {
    remove_tree_quietly(trash);
  } else {
    remove_tree_quietly(dir);
  }
}

void StageCache::remove_resume_dir(const std::string& key) const {
  std::error_code ignored;
  fs::remove_all(resume_dir(key), ignored);
}

void StageCache::touch(const std::string& key) const {
  const fs::path used = entry_dir(key) / "used";
  // utimensat is one syscall; create the marker only the first time.
  if (::utimensat(AT_FDCWD, used.c_str(), nullptr, 0) != 0 && errno == ENOENT) {
    const int fd = ::open(used.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    if (fd >= 0) ::close(fd);
  }
}

std::vector<CacheEntryInfo> StageCache::entries() const {
  std::vector<CacheEntryInfo> out;
  std::error_code ec;
  for (const auto& shard : fs::directory_iterator(root_ / "entries", ec)) {
    std::error_code inner;
    for (const auto& entry : fs::directory_iterator(shard.path(), inner)) {
      CacheEntryInfo info;
      info.key = entry.path().filename().string();
      try {
        const Manifest m = Manifest::from_json(json::parse(read_text_file(entry.path() / "manifest.json")));
        info.stage = m.stage;
        info.size = m.total_size;
        info.last_used_ms = m.created_ms;
      } catch (...) {
        info.stage = "(damaged)";
      }
      if (const auto used = stat_path(entry.path() / "used")) info.last_used_ms = used->mtime_ns / 1'000'000;
      out.push_back(std::move(info));
    }
  }
  return out;
}

std::size_t StageCache::remove_stale_temps() const {
  std::size_t removed = 0;
  std::error_code ec;
  for (const auto& temp : fs::directory_iterator(root_ / "tmp", ec)) {
    const std::string name = temp.path().filename().string();
    const std::string key = name.substr(0, name.find('.'));
    FileLock lock = FileLock::try_acquire(lock_file(key));
    if (!lock.held()) continue;  // being built right now
    remove_tree_quietly(temp.path());
    ++removed;
  }
  for (const auto& trash : fs::directory_iterator(root_ / "trash", ec)) {
    remove_tree_quietly(trash.path());
    ++removed;
  }
  // Checkpoints of a key that was committed meanwhile are useless; those of a key nobody has
  // retried for a week (its parameters were probably changed) are abandoned.
  const auto abandoned_before = fs::file_time_type::clock::now() - std::chrono::hours(24 * 7);
  for (const auto& resume : fs::directory_iterator(root_ / "resume", ec)) {
    const std::string key = resume.path().filename().string();
    FileLock lock = FileLock::try_acquire(lock_file(key));
    if (!lock.held()) continue;
    std::error_code time_error;
    const auto modified = fs::last_write_time(resume.path(), time_error);
    if (fs::exists(entry_dir(key) / "manifest.json") || (!time_error && modified < abandoned_before)) {
      remove_tree_quietly(resume.path());
      ++removed;
    }
  }
  remove_orphan_locks();  // not counted: empty files, not leftovers a user would miss
  return removed;
}

// Lock files of keys with nothing left (no entry, no temp folder, no checkpoints): those of gc'd
// entries, of failed builds, of temp folders removed above. Never one somebody holds or waits on:
// FileLock re-opens a lock file that was deleted while it waited.
std::size_t StageCache::remove_orphan_locks() const {
  std::set<std::string> building;
  std::error_code ec;
  for (const auto& temp : fs::directory_iterator(root_ / "tmp", ec)) {
    const std::string name = temp.path().filename().string();
    building.insert(name.substr(0, name.find('.')));
  }
  std::size_t removed = 0;
  for (const auto& file : fs::directory_iterator(root_ / "locks", ec)) {
    if (file.path().extension() != ".lock") continue;
    const std::string key = file.path().stem().string();
    if (building.count(key) || fs::exists(entry_dir(key)) || fs::exists(resume_dir(key))) continue;
    FileLock lock = FileLock::try_acquire(file.path());
    if (!lock.held()) continue;
    lock.remove_and_release(file.path());
    ++removed;
  }
  return removed;
}

bool StageCache::remove_if_unlocked(const std::string& key) const {
  FileLock lock = FileLock::try_acquire(lock_file(key));
  if (!lock.held()) return false;
  discard(key);
  if (!fs::exists(resume_dir(key))) lock.remove_and_release(lock_file(key));  // nothing left of the key
  return true;
}

}  // namespace petal
