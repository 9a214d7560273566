#pragma once
#include "pipeline/dag/stage_kind.h"

namespace petal {

// The split stage's implementation (runs in petal-data-worker: it decodes every image to check it).
void run_split_stage(StageContext& ctx);

}  // namespace petal
