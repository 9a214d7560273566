#include "pipeline/cache/run_log.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <tuple>

#include "pipeline/util/error.h"
#include "pipeline/util/fs.h"

namespace petal {

using nlohmann::json;

namespace {

std::string to_line(const RunRecord& r) {
  json j = {{"run", r.run_id}, {"exp", r.experiment}, {"stage", r.stage}, {"key", r.key},
            {"status", r.status}, {"start_ms", r.start_ms}, {"end_ms", r.end_ms}};
  if (!r.error.empty()) j["error"] = r.error;
  return j.dump() + "\n";
}

std::optional<RunRecord> from_line(const std::string& line) {
  try {
    const json j = json::parse(line);
    RunRecord r;
    r.run_id = j.at("run").get<std::string>();
    r.experiment = j.at("exp").get<std::string>();
    r.stage = j.at("stage").get<std::string>();
    r.key = j.at("key").get<std::string>();
    r.status = j.at("status").get<std::string>();
    r.start_ms = j.value("start_ms", std::int64_t{0});
    r.end_ms = j.value("end_ms", std::int64_t{0});
    r.error = j.value("error", "");
    return r;
  } catch (...) {
    return std::nullopt;
  }
}


// Opens the log for appending with an exclusive flock, making sure the descriptor still refers to
// the file at `file` (a concurrent compaction may have renamed a new one into place).
int open_locked(const fs::path& file) {
  for (int attempt = 0; attempt < 10; ++attempt) {
    const int fd = ::open(file.c_str(), O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) {
      throw PetalError("cannot open run log " + file.string() + ": " + std::strerror(errno), {}, kExitEnvironment);
    }
    while (::flock(fd, LOCK_EX) != 0 && errno == EINTR) {
    }
    struct stat by_fd {}, by_path {};
    if (::fstat(fd, &by_fd) == 0 && ::stat(file.c_str(), &by_path) == 0 && by_fd.st_ino == by_path.st_ino) {
      return fd;
    }
    ::close(fd);
  }
  throw PetalError("run log " + file.string() + " keeps changing under us", {}, kExitEnvironment);
}

}  // namespace

RunLog::RunLog(fs::path file) : file_(std::move(file)) {}

void RunLog::append(const std::vector<RunRecord>& records, bool durable) {
  if (records.empty()) return;
  std::error_code ec;
  fs::create_directories(file_.parent_path(), ec);
  const int fd = open_locked(file_);
  try {
    struct stat st {};
    ::fstat(fd, &st);
    std::string text;
    bool fresh = st.st_size == 0;
    if (!fresh) {
      // A log of another format version is set aside, not appended to.
      char head[64] = {};
      const ssize_t n = ::pread(fd, head, sizeof head - 1, 0);
      const std::string first(head, n > 0 ? static_cast<std::size_t>(n) : 0);
      if (first.rfind(kHeader, 0) != 0) {
        const fs::path aside = file_.string() + ".old";
        ::rename(file_.c_str(), aside.c_str());
        ::close(fd);
        append(records, durable);
        return;
      }
      char last = '\n';
      if (::pread(fd, &last, 1, st.st_size - 1) == 1 && last != '\n') text += '\n';  // end a torn line
    }
    if (fresh) text += std::string(kHeader) + "\n";
    for (const auto& r : records) text += to_line(r);
    write_all(fd, text, file_);
    if (durable) ::fdatasync(fd);
    const bool too_big = static_cast<std::uint64_t>(st.st_size) + text.size() > kCompactAboveBytes;
    ::close(fd);
    if (too_big) compact();
  } catch (...) {
    ::close(fd);
    throw;
  }
}

std::vector<RunRecord> RunLog::read() const {
  std::vector<RunRecord> out;
  std::string text;
  try {
    text = read_text_file(file_);
  } catch (const PetalError&) {
    return out;  // not found
  }
  std::istringstream in(text);
  std::string line;
  if (!std::getline(in, line) || line != kHeader) return out;  // another version: treated as not found
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    if (auto r = from_line(line)) out.push_back(std::move(*r));
  }
  return out;
}

std::optional<RunRecord> RunLog::last_success(const std::string& experiment, const std::string& stage) const {
  std::optional<RunRecord> found;
  for (auto& r : read()) {
    if (r.experiment == experiment && r.stage == stage && (r.status == "ran" || r.status == "cached")) found = r;
  }
  return found;
}

void RunLog::compact() {
  const int fd = open_locked(file_);
  try {
    std::map<std::tuple<std::string, std::string, std::string>, RunRecord> latest;
    std::vector<std::tuple<std::string, std::string, std::string>> order;
    for (auto& r : read()) {
      auto id = std::make_tuple(r.experiment, r.stage, r.status);
      if (!latest.count(id)) order.push_back(id);
      latest[id] = r;
    }
    std::vector<RunRecord> kept;
    for (auto& [id, r] : latest) kept.push_back(r);
    std::sort(kept.begin(), kept.end(), [](const RunRecord& a, const RunRecord& b) { return a.end_ms < b.end_ms; });
    std::string text = std::string(kHeader) + "\n";
    for (const auto& r : kept) text += to_line(r);
    write_file_atomically(file_, text);
  } catch (...) {
    ::close(fd);
    throw;
  }
  ::close(fd);
}

}  // namespace petal
