#include "pipeline/dag/graph.h"

#include <algorithm>
#include <functional>
#include <map>

#include "pipeline/util/suggest.h"

namespace petal {

namespace {

// Depth-first search for a cycle, returning its stage names in order (first == last), or empty.
std::vector<std::string> find_cycle(const std::vector<std::unique_ptr<StageNode>>& nodes) {
  std::map<const StageNode*, int> state;  // 0 new, 1 on stack, 2 done
  std::vector<const StageNode*> stack;
  std::vector<std::string> cycle;
  std::function<bool(const StageNode*)> visit = [&](const StageNode* node) {
    state[node] = 1;
    stack.push_back(node);
    for (const StageNode* up : node->needs) {
      if (state[up] == 1) {
        auto start = std::find(stack.begin(), stack.end(), up);
        for (auto it = start; it != stack.end(); ++it) cycle.push_back((*it)->name());
        cycle.push_back(up->name());
        return true;
      }
      if (state[up] == 0 && visit(up)) return true;
    }
    stack.pop_back();
    state[node] = 2;
    return false;
  };
  for (const auto& node : nodes) {
    if (state[node.get()] == 0 && visit(node.get())) break;
  }
  return cycle;
}

}  // namespace

Graph Graph::build(const Experiment& experiment, const StageRegistry& registry) {
  Graph graph;
  std::map<std::string, StageNode*> by_name;
  for (const auto& stage : experiment.stages) {
    auto node = std::make_unique<StageNode>();
    node->config = &stage;
    node->kind = registry.find(stage.kind);
    if (!node->kind) throw PetalError("stage kind '" + stage.kind + "' is not registered", stage.where);
    by_name[stage.name] = node.get();
    graph.nodes_.push_back(std::move(node));
  }

  std::vector<PetalError> errors;
  std::vector<std::string> names;
  for (const auto& [name, node] : by_name) names.push_back(name);
  for (const auto& node : graph.nodes_) {
    for (const auto& need : node->config->needs) {
      auto it = by_name.find(need);
      if (it == by_name.end()) {
        const bool is_default = node->config->needs_where.file.empty() ||
                                node->config->needs_where.line == node->config->where.line;
        errors.emplace_back("stage '" + node->name() + "' needs stage '" + need +
                                "', which this experiment does not define or has disabled" +
                                did_you_mean(need, names) +
                                (is_default ? "; add a [" + need + "] table, or set " + node->name() +
                                                  ".needs to the stages it should read"
                                            : ""),
                            node->config->needs_where);
        continue;
      }
      if (it->second == node.get()) {
        errors.emplace_back("stage '" + node->name() + "' needs itself", node->config->needs_where);
        continue;
      }
      node->needs.push_back(it->second);
      it->second->dependents.push_back(node.get());
    }
  }
  if (!errors.empty()) throw PetalErrors(std::move(errors));

  const std::vector<std::string> cycle = find_cycle(graph.nodes_);
  if (!cycle.empty()) {
    std::string text;
    for (std::size_t i = 0; i < cycle.size(); ++i) text += (i ? " -> " : "") + cycle[i];
    throw PetalError("the stages form a cycle: " + text + "; remove one of these `needs`",
                     by_name[cycle.front()]->config->needs_where);
  }

  // Kahn's algorithm, taking the ready stage that comes first in pipeline order.
  std::map<StageNode*, std::size_t> waiting;
  for (const auto& node : graph.nodes_) waiting[node.get()] = node->needs.size();
  const auto before = [&](const StageNode* a, const StageNode* b) {
    const int oa = registry.order(a->config->kind), ob = registry.order(b->config->kind);
    return oa != ob ? oa < ob : a->name() < b->name();
  };
  std::vector<StageNode*> ready;
  for (const auto& node : graph.nodes_) {
    if (node->needs.empty()) ready.push_back(node.get());
  }
  while (!ready.empty()) {
    auto next = std::min_element(ready.begin(), ready.end(), before);
    StageNode* node = *next;
    ready.erase(next);
    node->index = static_cast<int>(graph.order_.size());
    graph.order_.push_back(node);
    for (StageNode* down : node->dependents) {
      if (--waiting[down] == 0) ready.push_back(down);
    }
  }
  return graph;
}

const StageNode* Graph::find(const std::string& name) const {
  for (const auto* node : order_) {
    if (node->name() == name) return node;
  }
  return nullptr;
}

}  // namespace petal
