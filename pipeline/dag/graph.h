#pragma once
#include <memory>
#include <string>
#include <vector>

#include "pipeline/config/experiment.h"
#include "pipeline/dag/stage_registry.h"

namespace petal {

struct StageNode {
  const StageConfig* config = nullptr;
  const StageKind* kind = nullptr;
  std::vector<StageNode*> needs;       // upstream, in the order the config lists them
  std::vector<StageNode*> dependents;  // downstream
  int index = 0;                       // position in Graph::order()

  const std::string& name() const { return config->name; }
};

// The stages of one experiment and their dependencies, validated (every `needs` names an enabled
// stage, no cycles) and topologically ordered. Ties are broken by the registry's pipeline order
// (download before split before ...) and then by name, so the order is stable.
class Graph {
 public:
  static Graph build(const Experiment& experiment, const StageRegistry& registry);

  const std::vector<StageNode*>& order() const { return order_; }
  const StageNode* find(const std::string& name) const;
  std::size_t size() const { return order_.size(); }

 private:
  std::vector<std::unique_ptr<StageNode>> nodes_;
  std::vector<StageNode*> order_;
};

}  // namespace petal
