#pragma once
#include "pipeline/dag/stage_kind.h"

namespace petal {

// register: puts the evaluate stage's MLflow model into the MLflow Model Registry as a version of
// `model_name` (created if missing) and gates promotion: the `champion` alias moves to it only if
// its metric beats the current champion's by more than `margin`; otherwise it becomes `challenger`.
// Runs in petal itself (no worker): it talks to the run's tracking server (StageContext::tracking).
// A cached re-run does nothing; a re-run that does execute finds the version by the weights'
// digest instead of creating a duplicate.
//
// Output: registration.json  {model_name, version, created, alias, previous_champion, reason, source, run_id}
StageKind make_register_stage();

}  // namespace petal
