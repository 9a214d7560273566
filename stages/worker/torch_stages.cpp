#include "stages/worker/torch_stages.h"

namespace petal {

WorkerStageTable torch_stage_table() { return WorkerStageTable{}; }

}  // namespace petal
