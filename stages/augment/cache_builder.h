#pragma once
#include <cstdint>
#include <filesystem>
#include <functional>

#include "stages/augment/split_table.h"

namespace petal::augment {

struct CacheBuildOptions {
  int short_side = 256;  // see decode_image
  bool upscale = false;
  int threads = 1;       // decoding threads; OpenCV's own threading is off meanwhile (no oversubscription)
};

struct CacheBuildStats {
  std::size_t images = 0;
  std::uint64_t bytes = 0;  // size of images.bin
  double seconds = 0;       // wall time of reading, decoding and writing
};

// Decodes every row of `table` once (read, decode, resize, BGR -> RGB) on a pool of threads and
// writes the image cache (image_cache.h) into `out_dir` in the table's order, so the cache's
// bytes do not depend on thread timing. At most 4 x threads decoded images wait for the writer,
// which bounds memory whatever the dataset's size. Polls `cancelled` between images and throws
// StageCancelled when it says so; a decoding failure throws std::runtime_error naming the file.
CacheBuildStats build_image_cache(const SplitTable& table, const std::filesystem::path& out_dir,
                                  const CacheBuildOptions& options, const std::function<bool()>& cancelled = {});

}  // namespace petal::augment
