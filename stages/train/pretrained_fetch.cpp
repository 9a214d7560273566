#include "stages/train/pretrained_fetch.h"

#include <cstdlib>
#include <fstream>
#include <unistd.h>

#include "pipeline/util/error.h"
#include "pipeline/util/sha256.h"
#include "stages/download/http_fetch.h"

namespace petal {

namespace fs = std::filesystem;

namespace {

bool matches_prefix(const fs::path& file, const std::string& prefix) {
  std::error_code error;
  if (!fs::is_regular_file(file, error)) return false;
  return sha256_file(file).rfind(prefix, 0) == 0;
}

std::vector<fs::path> torch_hub_dirs() {
  std::vector<fs::path> dirs;
  if (const char* torch_home = std::getenv("TORCH_HOME"); torch_home && *torch_home) {
    dirs.push_back(fs::path(torch_home) / "hub" / "checkpoints");
  }
  if (const char* xdg = std::getenv("XDG_CACHE_HOME"); xdg && *xdg) dirs.push_back(fs::path(xdg) / "torch/hub/checkpoints");
  if (const char* home = std::getenv("HOME"); home && *home) dirs.push_back(fs::path(home) / ".cache/torch/hub/checkpoints");
  return dirs;
}

}  // namespace

fs::path weights_cache_dir() {
  if (const char* dir = std::getenv("PETAL_WEIGHTS_DIR"); dir && *dir) return dir;
  return download_cache_dir().parent_path() / "weights";
}

fs::path fetch_pretrained(const PretrainedWeights& weights, const std::string& url_override,
                          const std::function<void(const std::string&)>& log, const std::function<bool()>& cancelled) {
  const std::string url = url_override.empty() ? weights.url : url_override;
  const std::string file_name = url.substr(url.rfind('/') + 1);
  const std::string prefix = sha256_prefix_of(file_name);
  if (prefix.empty()) {
    throw PetalError("weights URL " + url + " has no sha256 prefix in its file name (like resnet18-f37072fd.pth)");
  }
  const fs::path kept = weights_cache_dir() / file_name;
  if (matches_prefix(kept, prefix)) return kept;
  for (const fs::path& dir : torch_hub_dirs()) {
    if (matches_prefix(dir / file_name, prefix)) {
      if (log) log("using " + (dir / file_name).string() + " (torch hub's copy)");
      return dir / file_name;
    }
  }

  fs::create_directories(kept.parent_path());
  const fs::path partial = kept.string() + ".download-" + std::to_string(::getpid());
  FetchOptions options;
  options.name = file_name;
  options.log = log;
  options.cancelled = cancelled;
  fetch_url(url, partial, options);
  const std::string digest = sha256_file(partial);
  if (digest.rfind(prefix, 0) != 0) {
    std::error_code ignored;
    fs::remove(partial, ignored);
    throw PetalError("weights downloaded from " + url + " have sha256 " + digest + ", which does not start with " +
                         prefix + " as the file name promises; the download is corrupt or the URL serves another file",
                     {}, kExitStageFailed);
  }
  fs::rename(partial, kept);
  return kept;
}

}  // namespace petal
