#pragma once
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "pipeline/util/error.h"

namespace petal {

// A TOML value as read from a file, before validation: either a table of further raw values, or a
// leaf (scalar or array) held as JSON. Every node remembers where it was written, so errors found
// later (unknown key, wrong type, out of range) can point at the user's text.
struct RawValue {
  bool is_table = false;
  std::map<std::string, RawValue> table;
  nlohmann::json leaf;
  SourceLocation where;
  // For `--set` values: the text as typed, so `--set s.command=true` can still mean the string
  // "true" when the parameter is a string.
  std::optional<std::string> typed_text;
};

// Parses one TOML file (syntax errors become PetalError with the parser's position).
RawValue parse_toml_file(const std::filesystem::path& file);
// Parses `text` as the value of a key, e.g. "5", "\"a\"", "[0.8, 0.1, 0.1]"; nullopt if not TOML.
std::optional<RawValue> parse_toml_value(const std::string& text, const SourceLocation& where);

// Parses `file` and, recursively, the files its `extends` names (relative to the including file),
// merging tables key by key: the including file wins. The result has no `extends` key.
RawValue load_merged_toml(const std::filesystem::path& file);

// Overlays `overlay` onto `base`: tables merge recursively, anything else is replaced.
void merge_raw(RawValue& base, const RawValue& overlay);

// Applies one `--set a.b=value` override. The value is parsed as TOML when it is valid TOML
// (numbers, booleans, quoted strings, arrays), else taken as a bare string (paths, names).
void apply_override(RawValue& root, const std::string& assignment);
// Sets root[path[0]][path[1]]... = value, creating tables on the way; throws (at value.where) when
// a component on the way is a value.
void set_raw_value(RawValue& root, const std::vector<std::string>& path, RawValue value);

}  // namespace petal
