#pragma once
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "pipeline/dag/stage_kind.h"

namespace petal {

// The kinds of stage petal knows. Built-in kinds come from `register_builtin_stages`; tests and
// benchmarks may add their own. `order()` is the canonical pipeline order used to break ties.
class StageRegistry {
 public:
  void add(StageKind kind);  // throws std::logic_error on a duplicate name
  const StageKind* find(const std::string& name) const;
  std::vector<std::string> names() const;  // in registration order
  int order(const std::string& name) const;

 private:
  std::vector<std::unique_ptr<StageKind>> kinds_;
};

// The kinds that ship with petal (stages/builtin_stages.cpp).
void register_builtin_stages(StageRegistry& registry);
const StageRegistry& builtin_registry();

}  // namespace petal
