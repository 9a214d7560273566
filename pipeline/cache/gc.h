#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "pipeline/cache/pins.h"
#include "pipeline/cache/stage_cache.h"

namespace petal {

struct GcOptions {
  std::uint64_t max_size = 0;  // bytes the cache may keep
  bool dry_run = false;
};

struct GcReport {
  std::size_t entries = 0;
  std::uint64_t bytes_before = 0;
  std::uint64_t bytes_after = 0;
  std::vector<CacheEntryInfo> removed;
  std::size_t pinned_kept = 0;
  std::size_t busy_kept = 0;     // being built or reused right now
  std::size_t temps_removed = 0; // leftovers of killed runs
};

// Removes least-recently-used entries until the cache holds at most `max_size` bytes, never a
// pinned entry and never one whose key is locked by a running build.
GcReport collect_garbage(const StageCache& cache, const Pins& pins, const GcOptions& options);

}  // namespace petal
