#include <cstdio>

#include "pipeline/cache/explain.h"
#include "pipeline/cache/gc.h"
#include "pipeline/cli/commands.h"
#include "pipeline/exec/project.h"
#include "pipeline/util/error.h"
#include "pipeline/util/units.h"

namespace petal::cli {

CLI::App* setup_gc(CLI::App& app, GcOptionsCli& options) {
  CLI::App* command = app.add_subcommand("gc", "remove least-recently-used cache entries (never pinned ones)");
  command->add_option("--max-size", options.max_size, "keep at most this much, e.g. 2GB, 500MB, 1.5GiB")
      ->required()
      ->type_name("SIZE");
  command->add_flag("-n,--dry-run", options.dry_run, "only say what would be removed");
  return command;
}

int run_gc(const GlobalOptions& global, const GcOptionsCli& options) {
  const auto max_size = parse_byte_size(options.max_size);
  if (!max_size) {
    throw PetalError("--max-size: cannot read '" + options.max_size + "' as a size; write e.g. 2GB, 500MB or 1.5GiB");
  }
  const Project project = Project::locate(global.state_dir.empty() ? std::nullopt
                                                                   : std::optional<std::filesystem::path>(global.state_dir));
  const StageCache cache(project.cache_dir());
  const Pins pins(project.pins_dir());
  const GcReport report = collect_garbage(cache, pins, GcOptions{*max_size, options.dry_run});
  const char* verb = options.dry_run ? "would remove" : "removed";
  for (const auto& e : report.removed) {
    std::printf("  %s %s %-12s %s\n", verb, short_key(e.key).c_str(), e.stage.c_str(), format_bytes(e.size).c_str());
  }
  std::printf("petal gc: %zu entries, %s -> %s; %s %zu, kept %zu pinned, %zu busy; %zu leftovers of killed runs removed\n",
              report.entries, format_bytes(report.bytes_before).c_str(), format_bytes(report.bytes_after).c_str(), verb,
              report.removed.size(), report.pinned_kept, report.busy_kept, report.temps_removed);
  return 0;
}

}  // namespace petal::cli
