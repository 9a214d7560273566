#include "pipeline/cache/gc.h"

#include <algorithm>

namespace petal {

GcReport collect_garbage(const StageCache& cache, const Pins& pins, const GcOptions& options) {
  GcReport report;
  if (!options.dry_run) report.temps_removed = cache.remove_stale_temps();
  std::vector<CacheEntryInfo> entries = cache.entries();
  report.entries = entries.size();
  for (const auto& e : entries) report.bytes_before += e.size;
  report.bytes_after = report.bytes_before;
  const std::set<std::string> pinned = pins.pinned_keys();
  std::sort(entries.begin(), entries.end(), [](const CacheEntryInfo& a, const CacheEntryInfo& b) {
    return a.last_used_ms != b.last_used_ms ? a.last_used_ms < b.last_used_ms : a.key < b.key;
  });
  for (const auto& e : entries) {
    if (pinned.count(e.key)) ++report.pinned_kept;
  }
  for (const auto& e : entries) {
    if (report.bytes_after <= options.max_size) break;
    if (pinned.count(e.key)) continue;
    if (!options.dry_run && !cache.remove_if_unlocked(e.key)) {
      ++report.busy_kept;
      continue;
    }
    report.bytes_after -= e.size;
    report.removed.push_back(e);
  }
  return report;
}

}  // namespace petal
