#include "stages/worker/data_stages.h"

#include "stages/augment/augment_impl.h"
#include "stages/split/split_impl.h"

namespace petal {

WorkerStageTable data_stage_table() {
  return WorkerStageTable{
      {"split", run_split_stage},
      {"augment", run_augment_stage},
  };
}

}  // namespace petal
