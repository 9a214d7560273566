#include "tests/support/cache_inspection.h"

#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <stdexcept>

#include "pipeline/util/sha256.h"
#include "tests/support/test_support.h"

namespace petal::test {

using nlohmann::json;

Tree read_tree(const fs::path& root) {
  Tree tree;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(root, ec); !ec && it != fs::recursive_directory_iterator();
       it.increment(ec)) {
    if (it->is_regular_file()) tree[it->path().lexically_relative(root).generic_string()] = read_file(it->path());
  }
  return tree;
}

EntryCheck check_entry(const fs::path& dir) {
  EntryCheck check;
  const std::string key = dir.filename().string();
  if (dir.parent_path().filename().string() != key.substr(0, 2)) {
    check.problem = "sits in the wrong shard folder";
    return check;
  }
  json manifest;
  try {
    manifest = json::parse(read_file(dir / "manifest.json"));
    if (!manifest.is_object()) throw std::runtime_error("not an object");
    check.stage = manifest.at("stage").get<std::string>();
    if (manifest.at("key").get<std::string>() != key) {
      check.problem = "manifest.json names key " + manifest.at("key").get<std::string>();
      return check;
    }
    std::set<std::string> listed;
    for (const auto& f : manifest.at("files")) {
      const std::string path = f.at("path").get<std::string>();
      listed.insert(path);
      const fs::path file = dir / "out" / path;
      std::error_code ec;
      if (!fs::is_regular_file(file, ec)) {
        check.problem = "out/" + path + " is missing";
        return check;
      }
      if (fs::file_size(file, ec) != f.at("size").get<std::uint64_t>()) {
        check.problem = "out/" + path + " has size " + std::to_string(fs::file_size(file, ec)) + ", manifest says " +
                        std::to_string(f.at("size").get<std::uint64_t>());
        return check;
      }
      if (petal::sha256_file(file) != f.at("sha256").get<std::string>()) {
        check.problem = "out/" + path + " does not match its sha256";
        return check;
      }
    }
    for (const auto& [path, content] : read_tree(dir / "out")) {
      if (!listed.count(path)) {
        check.problem = "out/" + path + " is not listed in manifest.json";
        return check;
      }
    }
  } catch (const std::exception& e) {
    check.problem = std::string("manifest.json is missing or unreadable: ") + e.what();
    return check;
  }
  check.complete = true;
  return check;
}

std::map<std::string, EntryCheck> check_entries(const fs::path& state) {
  std::map<std::string, EntryCheck> found;
  std::error_code ec;
  for (const auto& shard : fs::directory_iterator(state / "cache" / "entries", ec)) {
    std::error_code inner;
    for (const auto& entry : fs::directory_iterator(shard.path(), inner)) {
      found[entry.path().filename().string()] = check_entry(entry.path());
    }
  }
  return found;
}

fs::path entry_dir(const fs::path& state, const std::string& key) {
  return state / "cache" / "entries" / key.substr(0, 2) / key;
}

std::size_t count_children(const fs::path& dir) {
  std::size_t n = 0;
  std::error_code ec;
  for (auto it = fs::directory_iterator(dir, ec); !ec && it != fs::directory_iterator(); it.increment(ec)) ++n;
  return n;
}

RunReport parse_run_output(const std::string& output) {
  RunReport report;
  std::istringstream lines(output);
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind("petal: ", 0) == 0) {
      const auto at = line.find(", run ");
      if (at != std::string::npos) report.run_id = line.substr(at + 6);
      continue;
    }
    if (line.empty() || line[0] != '[') continue;
    const auto close = line.find("] ");
    if (close == std::string::npos) continue;
    std::istringstream fields(line.substr(close + 2));
    std::string stage, word;
    fields >> stage >> word;
    std::string status;
    if (word == "cached") status = "cached";
    else if (word == "done") status = "ran";
    else continue;  // "running" and the like
    report.status[stage] = status;
    const auto open = line.find('(');
    const auto end = line.find(')', open == std::string::npos ? 0 : open);
    if (open != std::string::npos && end != std::string::npos) report.short_key[stage] = line.substr(open + 1, end - open - 1);
  }
  return report;
}

std::map<std::string, std::string> run_log_records(const fs::path& state, const std::string& run_id,
                                                   std::size_t* unparseable) {
  std::map<std::string, std::string> records;
  std::istringstream lines(read_file(state / "runs.log"));
  std::string line;
  std::getline(lines, line);
  if (line != "# petal run log v1") throw std::runtime_error(state.string() + "/runs.log has no format header");
  while (std::getline(lines, line)) {
    if (line.empty()) continue;
    try {
      const json j = json::parse(line);
      if (j.at("run").get<std::string>() == run_id) records[j.at("stage").get<std::string>()] = j.at("status");
    } catch (const std::exception&) {
      ++*unparseable;
    }
  }
  return records;
}

std::map<std::string, std::map<std::string, std::string>> all_run_log_records(const fs::path& state) {
  std::map<std::string, std::map<std::string, std::string>> runs;
  std::istringstream lines(read_file(state / "runs.log"));
  std::string line;
  std::getline(lines, line);
  while (std::getline(lines, line)) {
    try {
      const json j = json::parse(line);
      runs[j.at("run").get<std::string>()][j.at("stage").get<std::string>()] = j.at("status");
    } catch (const std::exception&) {
      // a torn last line
    }
  }
  return runs;
}

}  // namespace petal::test
