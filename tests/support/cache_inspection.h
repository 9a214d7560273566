#pragma once
// The stage cache and a run's console output, read independently of petal's own lookup code, for
// the crash-safety and fault-injection suites.
#include <cstddef>
#include <filesystem>
#include <map>
#include <string>

namespace petal::test {

namespace fs = std::filesystem;

using Tree = std::map<std::string, std::string>;  // out/-relative path -> content
Tree read_tree(const fs::path& root);

struct EntryCheck {
  std::string stage;
  bool complete = false;
  std::string problem;  // why it is not complete
};
// An entry folder is complete when manifest.json names its own key and lists exactly the files in
// out/, each with the listed size and sha256.
EntryCheck check_entry(const fs::path& dir);
// Every entry folder under STATE/cache/entries, by key.
std::map<std::string, EntryCheck> check_entries(const fs::path& state);
fs::path entry_dir(const fs::path& state, const std::string& key);
std::size_t count_children(const fs::path& dir);

// What a `petal run` printed: its run id and, per stage, "cached" or "ran" (with the short key).
struct RunReport {
  std::string run_id;
  std::map<std::string, std::string> status;
  std::map<std::string, std::string> short_key;
};
RunReport parse_run_output(const std::string& output);

// The records of one run in STATE/runs.log: stage -> status. Unparseable lines are counted; a log
// without its format header throws.
std::map<std::string, std::string> run_log_records(const fs::path& state, const std::string& run_id,
                                                   std::size_t* unparseable);
// Every run in STATE/runs.log: petal run id -> (stage -> status).
std::map<std::string, std::map<std::string, std::string>> all_run_log_records(const fs::path& state);

}  // namespace petal::test
