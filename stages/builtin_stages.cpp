#include "pipeline/dag/stage_registry.h"
#include "stages/augment/augment_stage.h"
#include "stages/download/download_stage.h"
#include "stages/register/register_stage.h"
#include "stages/shell/shell_stage.h"
#include "stages/split/split_stage.h"
#include "stages/evaluate/evaluate_stage.h"
#include "stages/train/train_stage.h"

namespace petal {

// Registration order is the canonical pipeline order (it breaks ties in the topological sort).
void register_builtin_stages(StageRegistry& registry) {
  registry.add(make_download_stage());
  registry.add(make_split_stage());
  registry.add(make_augment_stage());
  registry.add(make_train_stage());
  registry.add(make_finetune_stage());
  registry.add(make_evaluate_stage());
  registry.add(make_register_stage());
  registry.add(make_shell_stage());
}

}  // namespace petal
