#pragma once
#include <cstdint>
#include <filesystem>
#include <set>
#include <string>
#include <vector>

namespace petal {

// A named set of cache keys that `petal gc` never removes (e.g. the run behind a deployed model).
struct Pin {
  std::string name;
  std::string experiment;
  std::vector<std::string> keys;
  std::int64_t created_ms = 0;
};

class Pins {
 public:
  explicit Pins(std::filesystem::path dir);
  void save(const Pin& pin);                 // replaces a pin of the same name
  bool remove(const std::string& name);
  std::vector<Pin> list() const;
  std::set<std::string> pinned_keys() const;

 private:
  std::filesystem::path dir_;
};

}  // namespace petal
