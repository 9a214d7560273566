#pragma once
#include "stages/worker/worker_protocol.h"

namespace petal {

// The LibTorch implementations petal-worker offers, by stage kind. Each torch stage's spec lives
// in the core registry (stages/builtin_stages.cpp) with `run = run_in_worker`; its implementation
// is added here. The table grows with the train, finetune and evaluate stages.
WorkerStageTable torch_stage_table();

}  // namespace petal
