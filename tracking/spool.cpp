#include "tracking/spool.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <sstream>

#include "pipeline/util/error.h"
#include "pipeline/util/fs.h"

namespace petal::mlflow {

using nlohmann::json;

namespace {
constexpr const char* kHeader = "# petal spool v1";
}

Spool::Spool(fs::path dir, std::string local_run_id)
    : file_(dir / (local_run_id + ".spool")), local_run_id_(std::move(local_run_id)) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (fs::exists(file_)) {
    const State state = read(file_);
    for (const auto& op : state.operations) next_seq_ = std::max(next_seq_, op.value("seq", std::int64_t{0}) + 1);
  }
}

void Spool::write_lines(const std::string& text) {
  const int fd = ::open(file_.c_str(), O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (fd < 0) throw PetalError("cannot write the tracking spool " + file_.string() + ": " + std::strerror(errno), {}, kExitEnvironment);
  std::string out;
  const off_t size = ::lseek(fd, 0, SEEK_END);
  char last = '\n';
  if (size == 0) out = std::string(kHeader) + "\n";
  else if (::pread(fd, &last, 1, size - 1) == 1 && last != '\n') out = "\n";  // end a line torn by a crash
  out += text;
  try {
    write_all(fd, out, file_);
  } catch (...) {
    ::close(fd);
    throw;
  }
  ::fdatasync(fd);
  ::close(fd);
}

void Spool::append(std::vector<json>& operations) {
  std::string text;
  for (auto& op : operations) {
    op["seq"] = next_seq_++;
    text += op.dump() + "\n";
  }
  if (!text.empty()) write_lines(text);
}

void Spool::mark_delivered(std::int64_t seq) { write_lines(json{{"op", "delivered"}, {"seq", seq}}.dump() + "\n"); }

void Spool::mark_skipped(std::int64_t seq, const std::string& reason) {
  write_lines(json{{"op", "skipped"}, {"seq", seq}, {"reason", reason}}.dump() + "\n");
}

void Spool::record_run_id(const std::string& run_id) {
  write_lines(json{{"op", "run_id"}, {"run_id", run_id}}.dump() + "\n");
}

void Spool::remove() {
  std::error_code ec;
  fs::remove(file_, ec);
}

Spool::State Spool::read(const fs::path& file) {
  State state;
  std::string text;
  try {
    text = read_text_file(file);
  } catch (const PetalError&) {
    return state;
  }
  std::istringstream in(text);
  std::string line;
  if (!std::getline(in, line) || line != kHeader) return state;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    json record;
    try {
      record = json::parse(line);
    } catch (const json::parse_error&) {
      ++state.torn_lines;  // a write cut short by a crash: its operation was never sent
      continue;
    }
    const std::string op = record.value("op", "");
    if (op == "delivered") state.delivered = std::max(state.delivered, record.value("seq", std::int64_t{0}));
    else if (op == "run_id") state.run_id = record.value("run_id", "");
    else if (op == "skipped") state.skipped.insert(record.value("seq", std::int64_t{0}));
    else state.operations.push_back(std::move(record));
  }
  return state;
}

std::vector<fs::path> Spool::pending(const fs::path& dir) {
  std::vector<fs::path> files;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    if (entry.path().extension() == ".spool") files.push_back(entry.path());
  }
  std::sort(files.begin(), files.end());
  return files;
}

}  // namespace petal::mlflow
