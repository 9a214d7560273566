#include "tracking/git_info.h"

#include <fstream>
#include <sstream>

namespace petal {

namespace fs = std::filesystem;

namespace {
std::string first_line(const fs::path& file) {
  std::ifstream in(file);
  std::string line;
  std::getline(in, line);
  return line;
}
}  // namespace

std::string git_commit_of(const fs::path& path) {
  std::error_code ec;
  fs::path dir = fs::absolute(path, ec);
  for (; !dir.empty(); dir = dir.parent_path()) {
    fs::path git = dir / ".git";
    if (fs::is_regular_file(git, ec)) {  // a worktree: "gitdir: <path>"
      const std::string line = first_line(git);
      if (line.rfind("gitdir: ", 0) == 0) git = fs::absolute(dir / line.substr(8));
    }
    if (fs::is_directory(git, ec)) {
      const std::string head = first_line(git / "HEAD");
      if (head.rfind("ref: ", 0) != 0) return head;  // detached
      const std::string ref = head.substr(5);
      fs::path common = git;
      if (fs::exists(git / "commondir", ec)) common = fs::absolute(git / first_line(git / "commondir"));
      for (const fs::path& base : {git, common}) {
        const std::string loose = first_line(base / ref);
        if (loose.size() >= 40) return loose;
      }
      std::ifstream packed(common / "packed-refs");
      for (std::string line; std::getline(packed, line);) {
        if (line.size() > 41 && line.compare(41, std::string::npos, ref) == 0) return line.substr(0, 40);
      }
      return "";
    }
    if (dir == dir.root_path()) break;
  }
  return "";
}

}  // namespace petal
