#pragma once
#include "pipeline/dag/stage_kind.h"

namespace petal {

// split: a reproducible train/val/test assignment of the downloaded images, stratified by class.
// Output: split.tsv (path, label, split), classes.txt, counts.json.
StageKind make_split_stage();

}  // namespace petal
