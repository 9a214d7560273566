#pragma once
#include "stages/worker/worker_protocol.h"

namespace petal {

// The OpenCV implementations petal-data-worker offers, by stage kind: the split stage's image
// checks and the augment stage's decoding, previews and image cache.
WorkerStageTable data_stage_table();

}  // namespace petal
