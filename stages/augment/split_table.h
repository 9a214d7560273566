#pragma once
#include <filesystem>
#include <string>
#include <vector>

namespace petal::augment {

// What the augment stage reads from a split stage's output (the split output contract):
//   split.tsv    header with at least path, label, split (train|val|test); paths relative to root
//   classes.txt  class names, one a line; a label's index is its line number
//   source.json  {"root": absolute folder the paths are relative to}
struct SplitRow {
  std::string path;   // relative to SplitTable::root
  int label = 0;      // index into SplitTable::classes
  std::string split;  // train, val or test
};

struct SplitTable {
  std::filesystem::path root;
  std::vector<std::string> classes;
  std::vector<SplitRow> rows;  // in split.tsv's order
};

// Throws std::runtime_error naming the file and line when the contract is not met (a missing
// column, a label not in classes.txt, an unknown split name).
SplitTable read_split_table(const std::filesystem::path& split_dir);

}  // namespace petal::augment
