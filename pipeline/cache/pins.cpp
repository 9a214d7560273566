#include "pipeline/cache/pins.h"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "pipeline/util/error.h"
#include "pipeline/util/fs.h"

namespace petal {

using nlohmann::json;

namespace {
void check_name(const std::string& name) {
  const bool ok = !name.empty() && name.size() <= 200 && name[0] != '.' &&
                  std::all_of(name.begin(), name.end(), [](char c) {
                    return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.';
                  });
  if (!ok) throw PetalError("pin name '" + name + "' must use letters, digits, '-', '_' and '.' only");
}
}  // namespace

Pins::Pins(fs::path dir) : dir_(std::move(dir)) {}

void Pins::save(const Pin& pin) {
  check_name(pin.name);
  fs::create_directories(dir_);
  const json j = {{"name", pin.name}, {"experiment", pin.experiment}, {"keys", pin.keys}, {"created_ms", pin.created_ms}};
  write_file_atomically(dir_ / (pin.name + ".json"), j.dump(1) + "\n");
}

bool Pins::remove(const std::string& name) {
  check_name(name);
  std::error_code ec;
  return fs::remove(dir_ / (name + ".json"), ec);
}

std::vector<Pin> Pins::list() const {
  std::vector<Pin> out;
  std::error_code ec;
  for (const auto& file : fs::directory_iterator(dir_, ec)) {
    if (file.path().extension() != ".json") continue;
    try {
      const json j = json::parse(read_text_file(file.path()));
      out.push_back(Pin{j.at("name").get<std::string>(), j.value("experiment", ""),
                        j.at("keys").get<std::vector<std::string>>(), j.value("created_ms", std::int64_t{0})});
    } catch (...) {
      // An unreadable pin protects nothing it cannot name; `petal pin --list` shows what is valid.
    }
  }
  std::sort(out.begin(), out.end(), [](const Pin& a, const Pin& b) { return a.name < b.name; });
  return out;
}

std::set<std::string> Pins::pinned_keys() const {
  std::set<std::string> keys;
  for (const auto& pin : list()) keys.insert(pin.keys.begin(), pin.keys.end());
  return keys;
}

}  // namespace petal
