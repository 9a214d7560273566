#pragma once
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>

namespace petal {

namespace fs = std::filesystem;

struct FileStat {
  std::uint64_t size = 0;
  std::int64_t mtime_ns = 0;
  std::uint64_t inode = 0;
  bool is_regular = false;
  bool is_directory = false;
};

// lstat-free stat (follows links); nullopt when the path does not exist.
std::optional<FileStat> stat_path(const fs::path& path);

std::string read_text_file(const fs::path& path);  // throws PetalError naming the file
// The last `max_lines` lines of a text file, each ending in '\n' ("" when it cannot be read).
std::string last_lines_of(const fs::path& path, std::size_t max_lines);

// Writes `content` to `path` so that readers see either the old file or the whole new one, even
// across a crash: write to a sibling temp file, fsync it, rename over the target, fsync the folder.
void write_file_atomically(const fs::path& path, const std::string& content);

void fsync_path(const fs::path& path);

// Writes all of `data` to `fd`, retrying short writes and EINTR; throws PetalError naming `path`.
void write_all(int fd, const std::string& data, const fs::path& path);  // a file or a directory; errors are ignored only for EINVAL

// Creates every file's data and every folder entry below `root` on disk (fsync, deepest first).
void fsync_tree(const fs::path& root);

// Copies a regular file for another cache entry: a reflink (FICLONE: shared blocks, copy on write)
// where the file system has them, else a byte copy. Never a hard link: cache entries must not share
// a mutable inode, or damage to one entry's file silently reaches the other (issue 26). Replaces
// `to`; throws PetalError naming both paths.
void copy_file_cow(const fs::path& from, const fs::path& to);

// Removes a tree; never throws (used on cleanup paths).
void remove_tree_quietly(const fs::path& path) noexcept;

// A name unique to this process and call: "<prefix>.<pid>.<counter>.<random>".
std::string unique_name(const std::string& prefix);

// Lexically normal absolute path, relative paths taken against `base`.
fs::path absolute_normal(const fs::path& path, const fs::path& base);

// Expands ${VAR} and ${VAR:-default} from the environment; an unset ${VAR} without default is an
// error returned through `missing` (the variable's name) and leaves the text unexpanded.
std::string expand_env(const std::string& text, std::string* missing = nullptr);

std::int64_t now_ms();

}  // namespace petal
