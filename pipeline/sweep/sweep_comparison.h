#pragma once
// The comparison a sweep ends with, written from its state alone: comparison.csv, comparison.md,
// summary.json and the charts in the sweep's summary folder, and on the parent MLflow run the same
// files under summary/, the trial counts, and the best trial's metrics (best.*) and run id (tags).
// Both the whole-sweep runner and `petal sweep --summarize` end with it.
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "pipeline/sweep/sweep_definition.h"
#include "pipeline/sweep/sweep_parent_run.h"
#include "pipeline/sweep/sweep_state.h"
#include "pipeline/sweep/sweep_summary.h"
#include "pipeline/sweep/sweep_trials.h"

namespace petal {

// The swept parameters ("train.lr", ...) in axis order: the comparison's value columns.
std::vector<std::string> swept_parameters(const std::vector<std::unique_ptr<TrialWork>>& trials);

// Ranks the trials and writes the files (charts by petal-data-worker when `charts`; a failure to
// draw them is a warning on `out`, not an error).
SweepSummary write_comparison(const SweepState& state, const SweepDefinition& sweep, const std::vector<std::string>& swept,
                              const std::filesystem::path& summary_dir, bool charts, std::FILE* out);

// Logs the comparison to the parent run; `shared_stage_runs` is how many stage executions sharing
// saved. Does not end the run.
void log_comparison(ParentRun& parent, const SweepState& state, const SweepDefinition& sweep, const SweepSummary& summary,
                    const std::filesystem::path& summary_dir, std::size_t shared_stage_runs);

}  // namespace petal
