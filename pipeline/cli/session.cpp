#include "pipeline/cli/session.h"

namespace petal::cli {

std::unique_ptr<Session> Session::open(const GlobalOptions& global, const ExperimentOptions& options) {
  const StageRegistry& registry = builtin_registry();
  Experiment experiment = load_experiment(options.file, registry, LoadOptions{options.overrides});
  Project project = Project::locate(global.state_dir.empty() ? std::nullopt
                                                             : std::optional<std::filesystem::path>(global.state_dir));
  auto session = std::unique_ptr<Session>(new Session{std::move(experiment), Graph{}, project,
                                                      StageCache(project.cache_dir()),
                                                      DigestCache(project.digest_store()), RunLog(project.run_log())});
  // Built after the move: the graph points into the session's own copy of the stages.
  session->graph = Graph::build(session->experiment, registry);
  return session;
}

std::filesystem::path Session::base_dir() const { return std::filesystem::absolute(experiment.file).parent_path(); }

}  // namespace petal::cli
