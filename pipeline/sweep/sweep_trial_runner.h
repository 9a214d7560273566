#pragma once
// One trial of a sweep in a process of its own (`petal sweep FILE --trial-index N`), for job arrays
// on a cluster: many such processes, on several machines sharing the state folder, run a sweep
// between them. What keeps them apart:
//   - <id>.lock, held shared by each of them: a whole-sweep run or --summarize (which hold it
//     exclusively) cannot start meanwhile, nor can these while one of those runs;
//   - <id>.<trial>.lock, held exclusively: one process per trial at a time (a retried pod while the
//     old one lingers gets a clear error, not a second writer of the same run);
//   - every change to the state file is a read-modify-write of this trial's record only, under the
//     short state lock (shared_sweep_state.h), so no process loses another's update;
//   - the sweep's parent MLflow run is created once: the first process to find none in the state
//     creates it while holding the state lock and records its id; the others read it from there.
// Stage sharing works as for `petal run`s side by side: one lock per cache key.
#include <filesystem>
#include <string>

#include "pipeline/exec/project.h"
#include "pipeline/sweep/sweep_definition.h"
#include "pipeline/sweep/sweep_runner.h"
#include "pipeline/sweep/sweep_state.h"

namespace petal {

struct SweepTrialResult {
  int exit_code = 0;            // 0 finished or pruned (also: final before), 1 failed, 130 interrupted
  bool final_before = false;    // nothing ran: an earlier attempt had finished it
  std::string sweep_id;
  std::filesystem::path state_file;
  TrialRecord record;           // as saved
  std::size_t trials = 0;       // in the sweep
};

// Runs trial number `trial_index` (0-based, the order of `petal sweep --list`). Of the options,
// no_tracking, verify, out and registry apply; each stage gets all of this machine's CPU budget
// ($PETAL_THREADS, else the cores). Throws PetalError for an index out of range (exit code 2), or
// when the locks above are held by someone else (3).
SweepTrialResult run_sweep_trial(const SweepDefinition& sweep, const Project& project, int trial_index,
                                 const SweepRunOptions& options);

}  // namespace petal
