#pragma once
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "pipeline/cache/digest_cache.h"
#include "pipeline/cache/run_log.h"
#include "pipeline/cache/stage_cache.h"
#include "pipeline/dag/graph.h"

namespace petal {

struct StagePlan {
  const StageNode* node = nullptr;
  nlohmann::json ingredients;
  std::string key;
  CacheLookup lookup;  // at planning time
  bool cached() const { return lookup.state == EntryState::Committed; }
};

// Keys for every stage (computed upstream first: a key covers its inputs' keys, not their files,
// so no stage has to run before all keys are known) and each key's cache state.
struct Plan {
  std::vector<StagePlan> stages;  // in graph order: stages[node->index]
  std::size_t cached_count() const;
};

Plan make_plan(const Graph& graph, const StageCache& cache, DigestCache& digests, bool verify);

// Why a stage is not cached, one line per reason (empty for a cached stage): its previous key is
// taken from the run log, its previous ingredients from that key's manifest.
std::vector<std::string> explain_stage(const StagePlan& plan, const std::string& experiment, const RunLog& log,
                                       const StageCache& cache);

}  // namespace petal
