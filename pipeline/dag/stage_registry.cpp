#include "pipeline/dag/stage_registry.h"

#include <stdexcept>

namespace petal {

void StageRegistry::add(StageKind kind) {
  if (find(kind.name)) throw std::logic_error("stage kind registered twice: " + kind.name);
  kinds_.push_back(std::make_unique<StageKind>(std::move(kind)));
}

const StageKind* StageRegistry::find(const std::string& name) const {
  for (const auto& k : kinds_) {
    if (k->name == name) return k.get();
  }
  return nullptr;
}

std::vector<std::string> StageRegistry::names() const {
  std::vector<std::string> out;
  for (const auto& k : kinds_) out.push_back(k->name);
  return out;
}

int StageRegistry::order(const std::string& name) const {
  for (std::size_t i = 0; i < kinds_.size(); ++i) {
    if (kinds_[i]->name == name) return static_cast<int>(i);
  }
  return static_cast<int>(kinds_.size());
}

const StageRegistry& builtin_registry() {
  static const StageRegistry registry = [] {
    StageRegistry r;
    register_builtin_stages(r);
    return r;
  }();
  return registry;
}

}  // namespace petal
