#pragma once
#include "pipeline/dag/stage_kind.h"

namespace petal {

// The evaluate stage's implementation in petal-worker (its spec: stages/evaluate/evaluate_stage.h).
void run_evaluate_stage(StageContext& ctx);

}  // namespace petal
