#include "pipeline/exec/planner.h"

#include "pipeline/cache/explain.h"
#include "pipeline/cache/stage_key.h"
#include "pipeline/util/error.h"
#include "pipeline/util/fs.h"

namespace petal {

using nlohmann::json;

std::size_t Plan::cached_count() const {
  std::size_t n = 0;
  for (const auto& s : stages) n += s.cached() ? 1 : 0;
  return n;
}

Plan make_plan(const Graph& graph, const StageCache& cache, DigestCache& digests, bool verify) {
  Plan plan;
  plan.stages.resize(graph.size());
  for (const StageNode* node : graph.order()) {
    std::map<std::string, std::string> input_keys;
    for (const StageNode* up : node->needs) input_keys[up->name()] = plan.stages[up->index].key;
    std::map<std::string, std::string> external;
    if (node->kind->external_inputs) {
      for (const auto& input : node->kind->external_inputs(node->config->params_json())) {
        const auto it = node->config->params.find(input.param);
        const SourceLocation where = it != node->config->params.end() ? it->second.where : node->config->where;
        if (!stat_path(input.path)) {
          throw PetalError(node->name() + "." + input.param + ": " + input.path.string() +
                               " does not exist; point " + node->name() + "." + input.param +
                               " at an existing file or folder (or override it with --set " + node->name() + "." +
                               input.param + "=PATH)",
                           where);
        }
        try {
          external[input.name()] = digests.digest(input.path).digest;
        } catch (const PetalError& e) {
          throw PetalError(node->name() + "." + input.param + ": " + e.message(), where, e.exit_code());
        }
      }
    }
    StagePlan& sp = plan.stages[node->index];
    sp.node = node;
    sp.ingredients = stage_ingredients(*node, input_keys, external);
    sp.key = stage_key(sp.ingredients);
    sp.lookup = cache.lookup(sp.key, verify);
  }
  digests.save();
  return plan;
}

std::vector<std::string> explain_stage(const StagePlan& plan, const std::string& experiment, const RunLog& log,
                                       const StageCache& cache) {
  if (plan.cached()) return {};
  if (plan.lookup.state == EntryState::Damaged) {
    return {"its cache entry " + short_key(plan.key) + " is damaged (" + plan.lookup.problem + "); it will be rebuilt"};
  }
  const auto last = log.last_success(experiment, plan.node->name());
  if (!last) return {"no earlier run of this stage is recorded"};
  if (last->key == plan.key) {
    return {"its cache entry " + short_key(plan.key) + " was removed (by petal gc or by hand)"};
  }
  const CacheLookup previous = cache.lookup(last->key, false);
  if (!previous.manifest) {
    return {"its key changed from " + short_key(last->key) + " to " + short_key(plan.key) +
            " (the earlier entry was removed, so the exact change is unknown)"};
  }
  auto reasons = explain_key_change(plan.node->name(), previous.manifest->ingredients, plan.ingredients);
  if (reasons.empty()) reasons.push_back("its key format changed");
  return reasons;
}

}  // namespace petal
