#include "pipeline/util/fs.h"

#include <deque>

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>
#include <vector>

#include "pipeline/util/error.h"

namespace petal {

std::optional<FileStat> stat_path(const fs::path& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return std::nullopt;
  FileStat out;
  out.size = static_cast<std::uint64_t>(st.st_size);
  out.mtime_ns = static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1000000000LL + st.st_mtim.tv_nsec;
  out.inode = st.st_ino;
  out.is_regular = S_ISREG(st.st_mode);
  out.is_directory = S_ISDIR(st.st_mode);
  return out;
}

std::string read_text_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw PetalError("cannot read " + path.string() + ": " + std::strerror(errno), {}, kExitEnvironment);
  std::ostringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

namespace {
[[noreturn]] void throw_io(const std::string& what, const fs::path& path) {
  throw PetalError(what + " " + path.string() + ": " + std::strerror(errno), {}, kExitEnvironment);
}
}  // namespace

void fsync_path(const fs::path& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw_io("cannot open", path);
  if (::fsync(fd) != 0 && errno != EINVAL) {
    const int saved = errno;
    ::close(fd);
    errno = saved;
    throw_io("cannot fsync", path);
  }
  ::close(fd);
}

void write_file_atomically(const fs::path& path, const std::string& content) {
  const fs::path temp = path.parent_path() / unique_name("." + path.filename().string());
  const int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) throw_io("cannot create", temp);
  try {
    write_all(fd, content, temp);
  } catch (...) {
    ::close(fd);
    ::unlink(temp.c_str());
    throw;
  }
  if (::fsync(fd) != 0) {
    const int saved = errno;
    ::close(fd);
    ::unlink(temp.c_str());
    errno = saved;
    throw_io("cannot fsync", temp);
  }
  ::close(fd);
  if (::rename(temp.c_str(), path.c_str()) != 0) {
    const int saved = errno;
    ::unlink(temp.c_str());
    errno = saved;
    throw_io("cannot rename into", path);
  }
  fsync_path(path.parent_path().empty() ? fs::path(".") : path.parent_path());
}

void write_all(int fd, const std::string& data, const fs::path& path) {
  const char* next = data.data();
  std::size_t left = data.size();
  while (left > 0) {
    const ssize_t n = ::write(fd, next, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw_io("cannot write", path);
    }
    next += n;
    left -= static_cast<std::size_t>(n);
  }
}

void fsync_tree(const fs::path& root) {
  std::vector<fs::path> directories;
  for (auto it = fs::recursive_directory_iterator(root); it != fs::recursive_directory_iterator(); ++it) {
    if (it->is_directory()) {
      directories.push_back(it->path());
    } else if (it->is_regular_file()) {
      fsync_path(it->path());
    }
  }
  for (auto it = directories.rbegin(); it != directories.rend(); ++it) fsync_path(*it);
  fsync_path(root);
}

namespace {

// A descriptor closed on every path out.
struct Fd {
  int fd = -1;
  explicit Fd(int value) : fd(value) {}
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
};

bool try_reflink(const fs::path& from, const fs::path& to) {
#ifdef FICLONE
  Fd in(::open(from.c_str(), O_RDONLY | O_CLOEXEC));
  if (in.fd < 0) return false;
  Fd out(::open(to.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (out.fd < 0) return false;
  if (::ioctl(out.fd, FICLONE, in.fd) == 0) return true;
  std::error_code ignored;
  fs::remove(to, ignored);
#else
  (void)from;
  (void)to;
#endif
  return false;
}

}  // namespace

void copy_file_cow(const fs::path& from, const fs::path& to) {
  if (try_reflink(from, to)) return;
  std::error_code error;
  fs::copy_file(from, to, fs::copy_options::overwrite_existing, error);
  if (error) {
    throw PetalError("cannot copy " + from.string() + " to " + to.string() + ": " + error.message() +
                     " (check free space and permissions)");
  }
}

void remove_tree_quietly(const fs::path& path) noexcept {
  std::error_code ignored;
  fs::remove_all(path, ignored);
}

std::string unique_name(const std::string& prefix) {
  static std::atomic<unsigned> counter{0};
  thread_local std::mt19937_64 random(std::random_device{}());
  std::ostringstream name;
  name << prefix << '.' << ::getpid() << '.' << counter.fetch_add(1) << '.' << std::hex
       << (random() & 0xffffffULL);
  return name.str();
}

fs::path absolute_normal(const fs::path& path, const fs::path& base) {
  const fs::path joined = path.is_absolute() ? path : base / path;
  fs::path normal = joined.lexically_normal();
  std::string text = normal.string();
  while (text.size() > 1 && text.back() == '/') text.pop_back();
  return text;
}

std::string expand_env(const std::string& text, std::string* missing) {
  std::string out;
  std::size_t i = 0;
  while (i < text.size()) {
    if (text[i] == '$' && i + 1 < text.size() && text[i + 1] == '{') {
      const std::size_t close = text.find('}', i + 2);
      if (close == std::string::npos) {
        out += text.substr(i);
        break;
      }
      const std::string inner = text.substr(i + 2, close - i - 2);
      const std::size_t dash = inner.find(":-");
      const std::string name = inner.substr(0, dash);
      const char* value = std::getenv(name.c_str());
      if (value && *value) {
        out += value;
      } else if (dash != std::string::npos) {
        out += inner.substr(dash + 2);
      } else {
        if (missing && missing->empty()) *missing = name;
        out += text.substr(i, close - i + 1);
      }
      i = close + 1;
    } else {
      out += text[i++];
    }
  }
  return out;
}

std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string last_lines_of(const fs::path& path, std::size_t max_lines) {
  std::ifstream in(path);
  std::deque<std::string> lines;
  for (std::string line; std::getline(in, line);) {
    lines.push_back(line);
    if (lines.size() > max_lines) lines.pop_front();
  }
  std::string out;
  for (const auto& line : lines) out += line + "\n";
  return out;
}

}  // namespace petal
