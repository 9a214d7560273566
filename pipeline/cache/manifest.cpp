#include "pipeline/cache/manifest.h"

#include <algorithm>
#include <stdexcept>

#include "pipeline/util/fs.h"
#include "pipeline/util/sha256.h"

namespace petal {

using nlohmann::json;

json Manifest::to_json() const {
  json files_json = json::array();
  for (const auto& f : files) {
    files_json.push_back({{"path", f.path}, {"size", f.size}, {"mtime_ns", f.mtime_ns}, {"sha256", f.sha256}});
  }
  return json{{"format", kFormat}, {"key", key},         {"stage", stage},
              {"run_id", run_id},  {"ingredients", ingredients}, {"report", report},
              {"created_ms", created_ms}, {"seconds", seconds}, {"files", files_json},
              {"total_size", total_size}};
}

Manifest Manifest::from_json(const json& j) {
  if (!j.is_object() || j.value("format", 0) != kFormat) throw std::runtime_error("unknown manifest format");
  Manifest m;
  m.key = j.at("key").get<std::string>();
  m.stage = j.value("stage", "");
  m.run_id = j.value("run_id", "");
  m.ingredients = j.at("ingredients");
  m.report = j.value("report", json::object());
  m.created_ms = j.value("created_ms", std::int64_t{0});
  m.seconds = j.value("seconds", 0.0);
  for (const auto& f : j.at("files")) {
    m.files.push_back(ManifestFile{f.at("path").get<std::string>(), f.at("size").get<std::uint64_t>(),
                                   f.at("mtime_ns").get<std::int64_t>(), f.at("sha256").get<std::string>()});
  }
  m.total_size = j.at("total_size").get<std::uint64_t>();
  return m;
}

std::vector<ManifestFile> scan_output_files(const fs::path& out_dir) {
  std::vector<ManifestFile> files;
  for (auto it = fs::recursive_directory_iterator(out_dir); it != fs::recursive_directory_iterator(); ++it) {
    if (!it->is_regular_file()) continue;
    const auto st = stat_path(it->path());
    if (!st) continue;
    files.push_back(ManifestFile{it->path().lexically_relative(out_dir).generic_string(), st->size, st->mtime_ns,
                                 sha256_file(it->path())});
  }
  std::sort(files.begin(), files.end(), [](const ManifestFile& a, const ManifestFile& b) { return a.path < b.path; });
  return files;
}

}  // namespace petal
