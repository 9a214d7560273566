#pragma once
#include "pipeline/dag/stage_kind.h"

namespace petal {

// train: a network on the augment stage's images. By default the transfer-learning first phase:
// ImageNet weights, backbone frozen (its BatchNorm in eval mode), only the new head trained.
StageKind make_train_stage();

// finetune: continues from the train stage's model with the backbone unfrozen from a named block
// onward, layer-wise learning-rate multipliers and (by default) a cyclical learning rate.
StageKind make_finetune_stage();

}  // namespace petal
