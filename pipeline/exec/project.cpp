#include "pipeline/exec/project.h"

#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <random>

namespace petal {

namespace fs = std::filesystem;

Project Project::locate(const std::optional<fs::path>& explicit_dir) {
  if (explicit_dir && !explicit_dir->empty()) return Project{fs::absolute(*explicit_dir)};
  if (const char* home = std::getenv("PETAL_HOME"); home && *home) return Project{fs::absolute(home)};
  const fs::path cwd = fs::current_path();
  std::error_code ec;
  for (fs::path dir = cwd; !dir.empty(); dir = dir.parent_path()) {
    if (fs::is_directory(dir / ".petal", ec)) return Project{dir / ".petal"};
    if (dir == dir.root_path()) break;
  }
  return Project{cwd / ".petal"};
}

}  // namespace petal

namespace petal {

std::string new_run_id() {
  const std::time_t now = std::time(nullptr);
  std::tm utc{};
  gmtime_r(&now, &utc);
  char stamp[32];
  std::strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", &utc);
  std::random_device device;
  char suffix[16];
  std::snprintf(suffix, sizeof suffix, "%06x", device() & 0xffffffu);
  return std::string(stamp) + "-" + suffix;
}

}  // namespace petal
