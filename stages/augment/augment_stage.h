#pragma once
#include "pipeline/dag/stage_kind.h"

namespace petal {

// augment: decodes every image of the split once into a memory-mappable pixel cache and fixes the
// augmentation policy the loader applies on the fly (each epoch sees new augmentations, so they
// are not precomputed). Its spec lives in petal's core; the implementation runs in
// petal-data-worker (stages/augment/augment_impl.cpp).
//
// Input: a split stage (split.tsv, classes.txt, source.json). Output:
//   images.bin     every image as uint8 RGB, HWC, short side = cache_short_side (see image_cache.h)
//   index.tsv      offset, height, width, label (class index), split, path per image
//   cache.json     the cache's format and size; classes.txt: class names, index = line number
//   augment.json   the resolved policy, seed and sizes the loader uses (augment_config.h)
//   preview_<policy>.png   4x4 augmented training samples for light, medium, deep and the selected policy
StageKind make_augment_stage();

}  // namespace petal
