#pragma once
#include "pipeline/dag/stage_kind.h"

namespace petal {

// download: brings a dataset into the pipeline as a listing of its images.
//   source = "local": a folder laid out as <class>/<image>; its content digest is the cache input.
//   source = "url": an archive of <class>/<image> folders (optionally below `subdir`), verified
//     against `sha256` when given.
//   source = "auto": "local" when `path` is an existing folder, else "url".
//   source = "flowers102": Oxford-102's 102flowers.tgz, imagelabels.mat and setid.mat from the
//     official site, `mirror` or $PETAL_DATA_MIRROR, verified against the published checksums
//     (or `checksums` overrides).
// Downloads go through the download cache (see http_fetch.h): resumed after an interruption,
// retried with backoff, reused once verified; progress lines go to the stage's log.
//
// Output (a contract: split reads it):
//   files.tsv     header "path\tlabel\tsize\tsha256", one row per image sorted by path; path is
//                 relative to dataset.json's root. imagefolder: label = the first folder.
//                 flowers102: path = jpg/image_NNNNN.jpg and label is EMPTY (labels are in imagelabels.mat).
//   dataset.json  {"source", "from", "layout": "imagefolder" | "flowers102", "root",
//                 "root_is_relative", "digest", "images", "bytes", ...}; imagefolder adds "classes"
//                 (name -> count); flowers102 adds "labels": "imagelabels.mat", "setid": "setid.mat"
//                 and "files" (per file: url, bytes, sha256, md5, verified).
//   classes.txt   imagefolder only: class names, one a line, sorted.
//   imagelabels.mat, setid.mat   flowers102 only: the official files, byte for byte.
//   extracted/    url and flowers102: the archive's content (flowers102: extracted/jpg/...).
StageKind make_download_stage();

}  // namespace petal
