#pragma once
#include <cstdint>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace petal {

struct ManifestFile {
  std::string path;  // relative to the entry's out/ folder, '/'-separated
  std::uint64_t size = 0;
  std::int64_t mtime_ns = 0;
  std::string sha256;
};

// The record that makes a cache entry valid: written last into the entry's temp folder, just
// before the atomic rename that commits it. An entry without a readable manifest is not an entry.
struct Manifest {
  static constexpr int kFormat = 1;
  std::string key;
  std::string stage;
  std::string run_id;  // the run that built it
  nlohmann::json ingredients;
  nlohmann::json report;  // StageReport::to_json()
  std::int64_t created_ms = 0;
  double seconds = 0;     // how long the stage ran
  std::vector<ManifestFile> files;
  std::uint64_t total_size = 0;

  nlohmann::json to_json() const;
  static Manifest from_json(const nlohmann::json& json);  // throws std::runtime_error when malformed
};

// Lists and hashes every regular file below `out_dir` (sorted by path).
std::vector<ManifestFile> scan_output_files(const std::filesystem::path& out_dir);

}  // namespace petal
