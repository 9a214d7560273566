#include "pipeline/cache/explain.h"

#include <functional>
#include <set>

namespace petal {

using nlohmann::json;

std::string short_key(const std::string& key) { return key.substr(0, 8); }

namespace {

const json& member(const json& object, const char* name) {
  static const json empty = json::object();
  if (object.is_object()) {
    auto it = object.find(name);
    if (it != object.end() && it->is_object()) return *it;
  }
  return empty;
}

std::string show(const json& value) {
  return value.dump();
}

std::set<std::string> keys_of(const json& a, const json& b) {
  std::set<std::string> keys;
  for (const auto& [k, v] : a.items()) keys.insert(k);
  for (const auto& [k, v] : b.items()) keys.insert(k);
  return keys;
}

// Compares two {name: value} maps and describes additions, removals and changes.
void compare_map(const json& before, const json& after, std::vector<std::string>& out,
                 const std::function<std::string(const std::string&)>& label,
                 const std::function<std::string(const json&)>& render) {
  for (const auto& key : keys_of(before, after)) {
    const bool had = before.contains(key), has = after.contains(key);
    if (had && has && before[key] == after[key]) continue;
    if (!had) out.push_back(label(key) + " added: " + render(after[key]));
    else if (!has) out.push_back(label(key) + " removed (was " + render(before[key]) + ")");
    else out.push_back(label(key) + " changed: " + render(before[key]) + " -> " + render(after[key]));
  }
}

}  // namespace

std::vector<std::string> explain_key_change(const std::string& stage, const json& before, const json& after) {
  std::vector<std::string> out;
  if (before.value("kind", "") != after.value("kind", "")) {
    out.push_back("stage kind changed: " + before.value("kind", "?") + " -> " + after.value("kind", "?"));
  }
  if (before.value("version", "") != after.value("version", "")) {
    out.push_back("implementation version changed: " + before.value("version", "?") + " -> " +
                  after.value("version", "?"));
  }
  compare_map(member(before, "params"), member(after, "params"), out,
              [&](const std::string& k) { return "parameter " + stage + "." + k; }, show);
  const auto key_text = [](const json& v) { return v.is_string() ? short_key(v.get<std::string>()) : v.dump(); };
  for (const auto& key : keys_of(member(before, "inputs"), member(after, "inputs"))) {
    const json& b = member(before, "inputs");
    const json& a = member(after, "inputs");
    if (!b.contains(key)) out.push_back("input '" + key + "' added");
    else if (!a.contains(key)) out.push_back("input '" + key + "' removed");
    else if (b[key] != a[key]) {
      out.push_back("input '" + key + "' changed: its key went " + key_text(b[key]) + " -> " + key_text(a[key]));
    }
  }
  compare_map(member(before, "external"), member(after, "external"), out,
              [&](const std::string& k) { return "external input " + stage + "." + k + " content"; }, key_text);
  compare_map(member(before, "env"), member(after, "env"), out,
              [](const std::string& k) { return "environment " + k; }, show);
  return out;
}

}  // namespace petal
