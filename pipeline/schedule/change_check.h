#pragma once
// Whether a scheduled trigger must run: the experiment is planned exactly as `petal run` would
// plan it (the local data source is hashed through the digest cache, so an unchanged folder costs
// a stat per file), and a URL data source is asked for its validators (ETag, Last-Modified,
// length) with one HEAD request. Anything not cached - new photos, a changed remote file, an
// edited experiment - means a run; everything cached means no run.
#include "pipeline/cli/commands.h"
#include "pipeline/schedule/schedule_state.h"
#include "pipeline/schedule/scheduler.h"

namespace petal {

// `state` supplies the validators seen at the last successful run. Throws PetalError (bad
// experiment file, unreachable data URL).
ChangeCheck check_for_changes(const cli::GlobalOptions& global, const cli::ExperimentOptions& experiment,
                              const ScheduleState& state);

}  // namespace petal
