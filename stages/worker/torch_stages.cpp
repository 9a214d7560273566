#include "stages/worker/torch_stages.h"

#include "stages/evaluate/evaluate_impl.h"
#include "stages/train/train_impl.h"

namespace petal {

WorkerStageTable torch_stage_table() {
  return WorkerStageTable{
      {"train", run_train_stage},
      {"finetune", run_finetune_stage},
      {"evaluate", run_evaluate_stage},
  };
}

}  // namespace petal
