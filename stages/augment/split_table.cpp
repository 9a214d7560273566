#include "stages/augment/split_table.h"

#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>

namespace petal::augment {

namespace fs = std::filesystem;

namespace {

std::vector<std::string> split_tabs(const std::string& line) {
  std::vector<std::string> fields;
  std::istringstream in(line);
  std::string field;
  while (std::getline(in, field, '\t')) fields.push_back(field);
  if (!line.empty() && line.back() == '\t') fields.emplace_back();
  return fields;
}

std::size_t column(const std::vector<std::string>& header, const std::string& name, const fs::path& file) {
  for (std::size_t i = 0; i < header.size(); ++i) {
    if (header[i] == name) return i;
  }
  throw std::runtime_error(file.string() + " has no '" + name + "' column (the split stage's output is expected)");
}

}  // namespace

SplitTable read_split_table(const fs::path& dir) {
  SplitTable table;
  {
    std::ifstream in(dir / "source.json");
    if (!in) throw std::runtime_error("cannot read " + (dir / "source.json").string() + " (the split stage's output is expected)");
    const fs::path root = nlohmann::json::parse(in).at("root").get<std::string>();
    table.root = root.is_absolute() ? root : dir / root;
  }
  std::map<std::string, int> label_of;
  {
    std::ifstream in(dir / "classes.txt");
    if (!in) throw std::runtime_error("cannot read " + (dir / "classes.txt").string());
    std::string line;
    while (std::getline(in, line)) {
      if (line.empty()) continue;
      label_of.emplace(line, static_cast<int>(table.classes.size()));
      table.classes.push_back(line);
    }
  }
  const fs::path file = dir / "split.tsv";
  std::ifstream in(file);
  std::string line;
  if (!in || !std::getline(in, line)) throw std::runtime_error("cannot read " + file.string());
  const auto header = split_tabs(line);
  const std::size_t path_col = column(header, "path", file), label_col = column(header, "label", file),
                    split_col = column(header, "split", file);
  for (int number = 2; std::getline(in, line); ++number) {
    if (line.empty()) continue;
    const auto fields = split_tabs(line);
    const auto where = file.string() + ":" + std::to_string(number);
    if (fields.size() < header.size()) throw std::runtime_error(where + ": expected " + std::to_string(header.size()) + " fields");
    SplitRow row;
    row.path = fields[path_col];
    row.split = fields[split_col];
    const auto label = label_of.find(fields[label_col]);
    if (label == label_of.end()) throw std::runtime_error(where + ": label '" + fields[label_col] + "' is not in classes.txt");
    if (row.split != "train" && row.split != "val" && row.split != "test") {
      throw std::runtime_error(where + ": split must be train, val or test (got '" + row.split + "')");
    }
    row.label = label->second;
    table.rows.push_back(std::move(row));
  }
  return table;
}

}  // namespace petal::augment
