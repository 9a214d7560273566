#pragma once
#include "pipeline/dag/stage_kind.h"

namespace petal {

// The augment stage's implementation (runs in petal-data-worker).
void run_augment_stage(StageContext& ctx);

}  // namespace petal
