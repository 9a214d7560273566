#pragma once
#include "pipeline/dag/stage_kind.h"

namespace petal {

// split: checks every image and assigns each to train, val or test. Runs in petal-data-worker
// (stages/split/split_impl.cpp). Output contract (the augment stage reads it):
//   split.tsv      path, label, split (train|val|test), sha256; paths relative to source.json's root
//   classes.txt    class names, one a line; a label's index is its line number
//   source.json    {"root": absolute folder of the images}
//   quality.json   counts per class and split, excluded files with reasons, duplicate groups, conflicts
//   dataset.json   the split as an MLflow dataset input (digest of split.tsv)
//   class_distribution.png, samples.png
StageKind make_split_stage();

}  // namespace petal
