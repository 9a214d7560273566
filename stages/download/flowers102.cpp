#include "stages/download/flowers102.h"

#include <cstdlib>
#include <filesystem>
#include <map>

#include "pipeline/util/error.h"

namespace petal {

const char* const kFlowers102Url = "https://www.robots.ox.ac.uk/~vgg/data/flowers/102";

namespace {

struct Published {
  const char* name;
  const char* checksum;
};

// The published checksums: md5 for the .mat files; sha256 for the tgz (its md5 is
// 52808999861908f626f3c1f4e79d11fa, which `checksums` may name instead). Small files first: a
// wrong mirror fails before the big transfer.
const Published kPublished[] = {
    {"imagelabels.mat", "md5:e0620be6f572b9609742df49c70aed4d"},
    {"setid.mat", "md5:a5357ecc9cb78c4bef273ce3793fc85c"},
    {"102flowers.tgz", "sha256:2d01ecc807db462958cfe3d92f57a8c252b4abd240eb955770201e45f783b246"},
};

bool is_url(const std::string& text) { return text.rfind("http://", 0) == 0 || text.rfind("https://", 0) == 0; }

// A local mirror folder, or "" when `base` is a URL.
std::string local_folder(const std::string& base) {
  if (base.rfind("file://", 0) == 0) return base.substr(7);
  return std::filesystem::path(base).is_absolute() ? base : "";
}

std::string complaint_for(const std::string& entry, std::string* file, Checksum* checksum) {
  const auto equals = entry.find('=');
  if (equals == std::string::npos) {
    return "entry \"" + entry + "\" must read \"<file>=sha256:<hex>\" or \"<file>=md5:<hex>\"";
  }
  const std::string name = entry.substr(0, equals);
  bool known = false;
  for (const auto& p : kPublished) known = known || name == p.name;
  if (!known) {
    return "entry \"" + entry + "\" names an unknown file \"" + name +
           "\"; the files are 102flowers.tgz, imagelabels.mat and setid.mat";
  }
  const std::string problem = parse_checksum(entry.substr(equals + 1), checksum);
  if (!problem.empty()) return "entry \"" + entry + "\": the checksum " + problem;
  if (file) *file = name;
  return "";
}

}  // namespace

std::string flowers102_base(const std::string& mirror_param) {
  std::string base = mirror_param;
  if (base.empty()) {
    const char* env = std::getenv("PETAL_DATA_MIRROR");
    base = env ? env : "";
  }
  if (base.empty()) base = kFlowers102Url;
  while (base.size() > 1 && base.back() == '/') base.pop_back();
  return base;
}

std::vector<Flowers102File> flowers102_files(const std::string& mirror_param, const std::vector<std::string>& checksums) {
  const std::string base = flowers102_base(mirror_param);
  if (const std::string problem = check_flowers102_mirror(base); !problem.empty()) {
    throw PetalError("download: the flowers102 mirror " + problem +
                         (mirror_param.empty() ? " (from $PETAL_DATA_MIRROR)" : " (from download.mirror)"),
                     {}, kExitUsage);
  }
  std::map<std::string, Checksum> overrides;
  for (const auto& entry : checksums) {
    std::string name;
    Checksum checksum;
    const std::string problem = complaint_for(entry, &name, &checksum);
    if (!problem.empty()) throw PetalError("download.checksums: " + problem, {}, kExitUsage);
    overrides[name] = checksum;
  }
  const std::string folder = local_folder(base);
  std::vector<Flowers102File> files;
  for (const auto& p : kPublished) {
    Flowers102File file;
    file.name = p.name;
    if (folder.empty()) file.url = base + "/" + p.name;
    else file.local = (std::filesystem::path(folder) / p.name).string();
    const auto o = overrides.find(p.name);
    if (o != overrides.end()) file.checksum = o->second;
    else parse_checksum(p.checksum, &file.checksum);
    files.push_back(std::move(file));
  }
  return files;
}

std::vector<std::string> check_flowers102_checksums(const std::vector<std::string>& checksums) {
  std::vector<std::string> complaints;
  for (const auto& entry : checksums) {
    std::string name;
    Checksum checksum;
    if (std::string problem = complaint_for(entry, &name, &checksum); !problem.empty()) {
      complaints.push_back(std::move(problem));
    }
  }
  return complaints;
}

std::string check_flowers102_mirror(const std::string& mirror) {
  if (mirror.empty() || is_url(mirror) || !local_folder(mirror).empty()) return "";
  return "must be an http:// or https:// base URL, a file:// URL or an absolute folder (got \"" + mirror + "\")";
}

}  // namespace petal
