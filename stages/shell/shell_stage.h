#pragma once
#include "pipeline/dag/stage_kind.h"

namespace petal {

// shell: a user's own command as a cached stage (kind = "shell"). The command runs under /bin/sh
// in the experiment file's folder with
//   PETAL_OUT        the folder to write outputs to (committed atomically on success)
//   PETAL_IN_<NAME>  each upstream stage's output folder (name upper-cased, '-' -> '_')
//   PETAL_METRICS    a file the command may write {"name": number, ...} to, reported as metrics
//   PETAL_STAGE      the stage's name
// Files named in `deps` (and their content) are part of the key, so editing a script re-runs it.
StageKind make_shell_stage();

}  // namespace petal
