#pragma once
// `petal sweep FILE --summarize`: the comparison built from the sweep's state alone, running no
// trial — the step after one-trial processes (sweep_trial_runner.h) ran the trials, e.g. a job
// array's dependent job. It writes the same files as a whole-sweep run ends with, logs them to the
// parent MLflow run (created now if no trial could), and ends that run: FINISHED when every trial
// is finished or pruned, else FAILED.
#include "pipeline/exec/project.h"
#include "pipeline/sweep/sweep_definition.h"
#include "pipeline/sweep/sweep_runner.h"

namespace petal {

// Of the options, no_tracking, verify, charts, out and registry apply. result.exit_code: 0 when
// every trial is finished or pruned, 1 otherwise. Throws PetalError when the sweep has no state yet
// (2), or while another process runs any of its trials or the whole sweep (3).
SweepResult summarize_sweep(const SweepDefinition& sweep, const Project& project, const SweepRunOptions& options);

}  // namespace petal
