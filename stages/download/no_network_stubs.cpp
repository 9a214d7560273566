// The download stage's network and archive parts for a PETAL_TORCH_ONLY build (CMakeLists.txt), which
// links no libcurl or libarchive: the LibTorch tests link petal_core, and these keep its download
// objects linkable. Stages run in the kit's prebuilt `petal`, which has the real ones.
#include <unistd.h>

#include "pipeline/util/error.h"
#include "stages/download/archive_extract.h"
#include "stages/download/http_fetch.h"

namespace petal {
namespace fs = std::filesystem;

namespace {
[[noreturn]] void not_in_this_build(const std::string& what) {
  throw PetalError(what + " is not in this PETAL_TORCH_ONLY build (no libcurl/libarchive); the kit's petal has it",
                   {}, kExitEnvironment);
}
}  // namespace

fs::path download_cache_dir() { return fs::temp_directory_path() / ("petal-downloads-" + std::to_string(::getuid())); }

FetchResult fetch_url(const std::string& url, const fs::path&, const FetchOptions&) { not_in_this_build("fetching " + url); }

std::string remote_validator(const std::string& url) { not_in_this_build("checking " + url); }

std::size_t extract_archive(const fs::path& archive, const fs::path&, const std::function<bool()>&) {
  not_in_this_build("extracting " + archive.string());
}

}  // namespace petal
