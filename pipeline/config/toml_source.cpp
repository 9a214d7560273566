#include "pipeline/config/toml_source.h"

#include <toml++/toml.h>

#include <algorithm>
#include <cstdint>
#include <optional>
#include <set>
#include <sstream>

#include "pipeline/util/fs.h"
#include "pipeline/util/quoting.h"

namespace petal {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

SourceLocation location_of(const toml::node& node, const std::string& display_path) {
  const auto& source = node.source();
  SourceLocation where;
  where.file = display_path;
  where.line = static_cast<int>(source.begin.line);
  where.column = static_cast<int>(source.begin.column);
  return where;
}

json leaf_to_json(const toml::node& node) {
  if (auto v = node.as_string()) return v->get();
  if (auto v = node.as_integer()) return v->get();
  if (auto v = node.as_floating_point()) return v->get();
  if (auto v = node.as_boolean()) return v->get();
  if (auto v = node.as_array()) {
    json out = json::array();
    for (const auto& item : *v) out.push_back(leaf_to_json(item));
    return out;
  }
  if (auto v = node.as_table()) {
    json out = json::object();
    for (const auto& [key, item] : *v) out[std::string(key.str())] = leaf_to_json(item);
    return out;
  }
  std::ostringstream text;  // dates and times: kept as their TOML text
  if (auto v = node.as_date()) text << v->get();
  if (auto v = node.as_time()) text << v->get();
  if (auto v = node.as_date_time()) text << v->get();
  return text.str();
}

RawValue convert(const toml::node& node, const std::string& display_path) {
  RawValue out;
  out.where = location_of(node, display_path);
  if (const auto* table = node.as_table()) {
    out.is_table = true;
    for (const auto& [key, child] : *table) {
      RawValue value = convert(child, display_path);
      // Keys carry their own position, which is where users look for a misspelt key.
      if (key.source().begin.line > 0) {
        value.where.line = static_cast<int>(key.source().begin.line);
        value.where.column = static_cast<int>(key.source().begin.column);
      }
      out.table.emplace(std::string(key.str()), std::move(value));
    }
  } else {
    out.leaf = leaf_to_json(node);
  }
  return out;
}

RawValue parse_text(const std::string& text, const std::string& display_path) {
  try {
    toml::table table = toml::parse(text, display_path);
    RawValue root = convert(table, display_path);
    root.where = SourceLocation{display_path, 0, 0};
    return root;
  } catch (const toml::parse_error& e) {
    SourceLocation where{display_path, static_cast<int>(e.source().begin.line),
                         static_cast<int>(e.source().begin.column)};
    throw PetalError("TOML syntax error: " + std::string(e.description()), where);
  }
}

// Experiment files are small TOML texts; anything past this is a mistake (a data file, a device).
constexpr std::uintmax_t kMaxExperimentFileBytes = 16u << 20;

// Why `file` cannot be an experiment file ("" when it can), telling apart what a user would fix
// differently: a missing file, a folder, a device or pipe (/dev/zero would be read forever), a
// file far too large to be an experiment.
std::string experiment_file_problem(const fs::path& file) {
  const std::string name = "experiment file " + file.string();
  std::error_code ec;
  const fs::file_status status = fs::status(file, ec);
  if (status.type() == fs::file_type::not_found || (ec && status.type() == fs::file_type::none)) {
    return name + " does not exist";
  }
  if (status.type() == fs::file_type::directory) return name + " is a folder; name a .toml file in it";
  if (status.type() != fs::file_type::regular) {
    return name + " is not a regular file (a device, pipe or socket); name a .toml file";
  }
  const std::uintmax_t size = fs::file_size(file, ec);
  if (!ec && size > kMaxExperimentFileBytes) {
    return name + " is " + std::to_string(size >> 20) + " MiB; experiment files are TOML texts of at most 16 MiB";
  }
  return {};
}

std::string display_path_of(const fs::path& file) { return file.lexically_normal().string(); }

RawValue load_recursive(const fs::path& file, std::vector<fs::path>& chain, const SourceLocation& asked_at) {
  const fs::path canonical = fs::weakly_canonical(file);
  if (std::find(chain.begin(), chain.end(), canonical) != chain.end()) {
    std::string cycle;
    for (const auto& f : chain) cycle += f.filename().string() + " -> ";
    throw PetalError("`extends` forms a cycle: " + cycle + canonical.filename().string(), asked_at);
  }
  if (chain.size() > 16) throw PetalError("`extends` nests deeper than 16 files", asked_at);
  if (const std::string problem = experiment_file_problem(file); !problem.empty()) {
    throw PetalError(problem + (asked_at.known() ? " (named by `extends`)" : ""), asked_at);
  }
  std::string text;
  try {
    text = read_text_file(file);
  } catch (const PetalError& e) {
    throw PetalError(e.message(), asked_at);
  }
  RawValue own = parse_text(text, display_path_of(file));
  auto extends_it = own.table.find("extends");
  if (extends_it == own.table.end()) return own;

  const RawValue extends = extends_it->second;
  own.table.erase(extends_it);
  std::vector<std::pair<std::string, SourceLocation>> bases;
  if (extends.leaf.is_string()) {
    bases.emplace_back(extends.leaf.get<std::string>(), extends.where);
  } else if (extends.leaf.is_array() && std::all_of(extends.leaf.begin(), extends.leaf.end(),
                                                    [](const json& j) { return j.is_string(); })) {
    for (const auto& b : extends.leaf) bases.emplace_back(b.get<std::string>(), extends.where);
  } else {
    throw PetalError("extends must be a file name or a list of file names (got " + extends.leaf.dump() + ")",
                     extends.where);
  }
  chain.push_back(canonical);
  RawValue merged;
  merged.is_table = true;
  merged.where = own.where;
  for (const auto& [name, where] : bases) {
    if (name.empty()) {
      throw PetalError("extends names an empty file name; name a base experiment file, e.g. extends = \"base.toml\"",
                       where);
    }
    const fs::path base_file = fs::path(name).is_absolute() ? fs::path(name) : file.parent_path() / name;
    merge_raw(merged, load_recursive(base_file, chain, where));
  }
  chain.pop_back();
  merge_raw(merged, own);
  return merged;
}

}  // namespace

RawValue parse_toml_file(const fs::path& file) { return parse_text(read_text_file(file), display_path_of(file)); }

std::optional<RawValue> parse_toml_value(const std::string& text, const SourceLocation& where) {
  try {
    toml::table table = toml::parse("v = " + text);
    const toml::node* node = table.get("v");
    if (!node || table.size() != 1) return std::nullopt;
    RawValue value = convert(*node, where.file);
    value.where = where;
    return value;
  } catch (const toml::parse_error&) {
    return std::nullopt;
  }
}

RawValue load_merged_toml(const fs::path& file) {
  std::vector<fs::path> chain;
  return load_recursive(file, chain, {});
}

void merge_raw(RawValue& base, const RawValue& overlay) {
  if (!base.is_table || !overlay.is_table) {
    base = overlay;
    return;
  }
  for (const auto& [key, value] : overlay.table) {
    auto it = base.table.find(key);
    if (it != base.table.end() && it->second.is_table && value.is_table) {
      merge_raw(it->second, value);
    } else {
      base.table[key] = value;
    }
  }
}

void apply_override(RawValue& root, const std::string& assignment) {
  const SourceLocation where{"--set " + clipped(assignment), 0, 0};
  const std::size_t eq = assignment.find('=');
  if (eq == std::string::npos || eq == 0) {
    throw PetalError("expected KEY=VALUE, e.g. --set train.epochs=5", where);
  }
  const std::string key_path = assignment.substr(0, eq);
  const std::string text = assignment.substr(eq + 1);
  std::vector<std::string> parts;
  std::stringstream stream(key_path);
  for (std::string part; std::getline(stream, part, '.');) {
    if (part.empty()) throw PetalError("empty key component in '" + key_path + "'", where);
    parts.push_back(part);
  }
  RawValue value;
  if (auto parsed = parse_toml_value(text, where)) {
    value = *parsed;
  } else {
    value.leaf = text;
    value.where = where;
  }
  value.typed_text = text;
  set_raw_value(root, parts, std::move(value));
}

void set_raw_value(RawValue& root, const std::vector<std::string>& path, RawValue value) {
  if (path.empty()) throw PetalError("empty key path", value.where);
  std::string key_path;
  for (const auto& part : path) key_path += (key_path.empty() ? "" : ".") + part;
  RawValue* node = &root;
  for (std::size_t i = 0; i + 1 < path.size(); ++i) {
    RawValue& child = node->table[path[i]];
    if (!child.is_table) {
      if (!child.leaf.is_null()) {
        throw PetalError("'" + path[i] + "' is a value, not a table; cannot set " + key_path, value.where);
      }
      child.is_table = true;
      child.where = value.where;
    }
    node = &child;
  }
  node->table[path.back()] = std::move(value);
}

}  // namespace petal
