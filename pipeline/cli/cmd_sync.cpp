#include <cstdio>
#include <map>
#include <memory>

#include "pipeline/cli/commands.h"
#include "pipeline/exec/project.h"
#include "tracking/local_server.h"
#include "tracking/run_logger.h"

namespace petal::cli {

CLI::App* setup_sync(CLI::App& app, SyncOptions& options) {
  CLI::App* command = app.add_subcommand("sync", "send tracking data spooled while the MLflow server was away");
  command->add_option("--uri", options.uri, "send everything to this tracking server instead of where it was meant to go");
  return command;
}

int run_sync(const GlobalOptions& global, const SyncOptions& options) {
  const Project project = Project::locate(global.state_dir.empty() ? std::nullopt
                                                                   : std::optional<std::filesystem::path>(global.state_dir));
  std::map<std::string, std::unique_ptr<mlflow::Client>> clients;
  const auto client_for = [&](const std::string& server) -> mlflow::Client* {
    std::string uri = !options.uri.empty() ? options.uri : server;
    if (uri.empty()) uri = LocalMlflowServer(project.state_dir / "mlflow").ensure_running();
    auto& slot = clients[uri];
    if (!slot) slot = std::make_unique<mlflow::Client>(uri);
    return slot.get();
  };
  const mlflow::SyncReport report = mlflow::sync_spools(client_for, project.state_dir / "spool");
  std::printf("petal sync: %zu spooled runs, %zu operations delivered, %zu runs complete", report.spools,
              report.delivered_operations, report.completed);
  if (report.killed > 0) std::printf(" (%zu left RUNNING by a killed petal, now ended as KILLED)", report.killed);
  std::printf("\n");
  for (const auto& warning : report.warnings) std::printf("  skipped: %s\n", warning.c_str());
  for (const auto& error : report.errors) std::printf("  not delivered (kept in the spool): %s\n", error.c_str());
  return report.errors.empty() ? kExitOk : kExitEnvironment;
}

}  // namespace petal::cli
