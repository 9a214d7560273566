#pragma once
#include <filesystem>
#include <memory>

#include "pipeline/cache/digest_cache.h"
#include "pipeline/cache/run_log.h"
#include "pipeline/cache/stage_cache.h"
#include "pipeline/cli/commands.h"
#include "pipeline/config/experiment.h"
#include "pipeline/dag/graph.h"
#include "pipeline/exec/planner.h"
#include "pipeline/exec/project.h"

namespace petal::cli {

// What run, status and pin share: the loaded experiment, its graph, and the project's state.
struct Session {
  Experiment experiment;
  Graph graph;
  Project project;
  StageCache cache;
  DigestCache digests;
  RunLog log;

  static std::unique_ptr<Session> open(const GlobalOptions& global, const ExperimentOptions& options);
  Plan plan(bool verify) { return make_plan(graph, cache, digests, verify); }
  std::filesystem::path base_dir() const;
};

}  // namespace petal::cli
