#pragma once
#include <filesystem>
#include <optional>
#include <string>

namespace petal {

// Where petal keeps its state: the cache, run log, digest store and pins. Chosen, in order, by
// --state-dir, by $PETAL_HOME, by the nearest `.petal` folder in the working directory or above
// it (like git finds `.git`), and otherwise `./.petal`.
struct Project {
  std::filesystem::path state_dir;

  std::filesystem::path cache_dir() const { return state_dir / "cache"; }
  std::filesystem::path run_log() const { return state_dir / "runs.log"; }
  std::filesystem::path digest_store() const { return state_dir / "digests.tsv"; }
  std::filesystem::path pins_dir() const { return state_dir / "pins"; }
  std::filesystem::path sweeps_dir() const { return state_dir / "sweeps"; }

  static Project locate(const std::optional<std::filesystem::path>& explicit_dir);
};

// A new petal run id: the UTC time and 24 random bits, e.g. "20261123-153012-a3f09c".
std::string new_run_id();

}  // namespace petal
