#pragma once
#include "pipeline/dag/stage_kind.h"

namespace petal {

// download: brings a dataset into the pipeline as an image-folder listing.
//   source = "local": a folder laid out as <class>/<image>; its content digest is the cache input.
// Output: files.tsv (path, label, size, sha256 per image), classes.txt, dataset.json.
StageKind make_download_stage();

}  // namespace petal
