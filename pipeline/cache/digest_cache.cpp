#include "pipeline/cache/digest_cache.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string_view>

#include "pipeline/util/error.h"
#include "pipeline/util/fs.h"
#include "pipeline/util/sha256.h"

namespace petal {

namespace {
constexpr std::string_view kHeader = "# petal digest cache v1\n";
constexpr std::int64_t kRacyWindowNs = 2'000'000'000;
}  // namespace

DigestCache::DigestCache(fs::path store) : store_(std::move(store)) {}

void DigestCache::load_locked() {
  if (loaded_) return;
  loaded_ = true;
  std::string text;
  try {
    text = read_text_file(store_);
  } catch (const PetalError&) {
    return;  // no store yet
  }
  if (text.compare(0, kHeader.size(), kHeader) != 0) return;  // other version: start afresh
  std::string_view rest(text);
  rest.remove_prefix(kHeader.size());
  while (!rest.empty()) {
    const std::size_t end = rest.find('\n');
    if (end == std::string_view::npos) break;  // torn last line
    std::string_view line = rest.substr(0, end);
    rest.remove_prefix(end + 1);
    std::string_view fields[5];
    std::size_t count = 0;
    while (count < 5) {
      const std::size_t tab = line.find('\t');
      fields[count++] = line.substr(0, tab);
      if (tab == std::string_view::npos) break;
      line.remove_prefix(tab + 1);
    }
    if (count != 5 || fields[4].size() != 64) continue;
    try {
      Entry entry{std::stoull(std::string(fields[1])), std::stoll(std::string(fields[2])),
                  std::stoull(std::string(fields[3])), std::string(fields[4])};
      entries_[std::string(fields[0])] = std::move(entry);
    } catch (...) {
      continue;
    }
  }
}

std::string DigestCache::file_digest_locked(const fs::path& absolute, std::uint64_t size, std::int64_t mtime_ns,
                                            std::uint64_t inode, std::size_t* rehashed) {
  const std::string key = absolute.string();
  auto it = entries_.find(key);
  if (it != entries_.end() && it->second.size == size && it->second.mtime_ns == mtime_ns &&
      it->second.inode == inode) {
    return it->second.sha256;
  }
  std::string digest = sha256_file(absolute);
  ++*rehashed;
  const std::int64_t now_ns = now_ms() * 1'000'000;
  if (mtime_ns < now_ns - kRacyWindowNs) {
    entries_[key] = Entry{size, mtime_ns, inode, digest};
    dirty_ = true;
  } else if (it != entries_.end()) {
    entries_.erase(it);
    dirty_ = true;
  }
  return digest;
}

TreeDigest DigestCache::digest(const fs::path& path) {
  std::lock_guard<std::mutex> lock(mutex_);
  load_locked();
  const fs::path root = fs::absolute(path).lexically_normal();
  const auto root_stat = stat_path(root);
  if (!root_stat) {
    throw PetalError(root.string() + " does not exist", {}, kExitEnvironment);
  }
  TreeDigest out;
  if (root_stat->is_regular) {
    FileDigest file{"", root_stat->size,
                    file_digest_locked(root, root_stat->size, root_stat->mtime_ns, root_stat->inode, &out.rehashed)};
    out.total_size = file.size;
    out.digest = sha256_hex("file\t" + std::to_string(file.size) + "\t" + file.sha256 + "\n");
    out.files.push_back(std::move(file));
    return out;
  }
  if (!root_stat->is_directory) throw PetalError(root.string() + " is neither a file nor a folder", {}, kExitEnvironment);

  struct Pending {
    std::string relative;
    FileStat stat;
  };
  std::vector<Pending> pending;
  std::error_code ec;
  auto it = fs::recursive_directory_iterator(root, fs::directory_options::follow_directory_symlink, ec);
  if (ec) throw PetalError("cannot list " + root.string() + ": " + ec.message(), {}, kExitEnvironment);
  for (; it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (ec) throw PetalError("cannot list " + root.string() + ": " + ec.message(), {}, kExitEnvironment);
    const std::string name = it->path().filename().string();
    if (!name.empty() && name[0] == '.') {
      if (it->is_directory(ec)) it.disable_recursion_pending();
      continue;
    }
    const auto st = stat_path(it->path());
    if (!st || !st->is_regular) continue;
    pending.push_back({it->path().lexically_relative(root).generic_string(), *st});
  }
  std::sort(pending.begin(), pending.end(),
            [](const Pending& a, const Pending& b) { return a.relative < b.relative; });
  Sha256 tree;
  out.files.reserve(pending.size());
  for (const auto& p : pending) {
    FileDigest file{p.relative, p.stat.size,
                    file_digest_locked(root / p.relative, p.stat.size, p.stat.mtime_ns, p.stat.inode, &out.rehashed)};
    const std::string line = file.relative + "\t" + std::to_string(file.size) + "\t" + file.sha256 + "\n";
    tree.update(line);
    out.total_size += file.size;
    out.files.push_back(std::move(file));
  }
  out.digest = tree.hex_digest();
  return out;
}

void DigestCache::save() {
  std::lock_guard<std::mutex> lock(mutex_);
  if (!dirty_) return;
  std::string text(kHeader);
  text.reserve(entries_.size() * 160);
  for (const auto& [path, e] : entries_) {
    if (path.find_first_of("\t\n") != std::string::npos) continue;  // not representable; re-hashed
    text += path + "\t" + std::to_string(e.size) + "\t" + std::to_string(e.mtime_ns) + "\t" +
            std::to_string(e.inode) + "\t" + e.sha256 + "\n";
  }
  try {
    fs::create_directories(store_.parent_path());
    write_file_atomically(store_, text);
    dirty_ = false;
  } catch (...) {
    // A lost stat cache only costs re-hashing next time.
  }
}

}  // namespace petal
