#pragma once
// Only the Tensor class: the full torch headers cost about 15 s per translation unit.
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "stages/augment/augment_policy.h"
#include "stages/augment/normalize.h"

namespace petal {

// Options of a BatchLoader. Defaults come from the augment stage's augment.json where noted.
struct LoaderOptions {
  std::filesystem::path data_dir;  // an augment stage's output: the image cache and augment.json
  std::string split = "train";     // the cache entries used: train, val or test
  bool augment = true;             // apply the policy; false: the evaluation view (resize, centre crop)
  bool shuffle = true;             // a new seeded order every epoch; false: cache order
  std::int64_t batch_size = 64;
  bool drop_last = false;          // drop a final batch smaller than batch_size
  int workers = 0;                 // threads building batches; 0: the machine's cores
  int prefetch = 0;                // batches built ahead of the consumer; 0: 2 x workers
  bool channels_last = false;      // images in NHWC memory order (the logical shape stays NCHW)
  augment::Normalization normalization = augment::Normalization::imagenet();  // what the network's weights expect
  std::optional<std::uint64_t> seed;              // default: augment.json's seed
  std::optional<augment::Policy> policy;          // default: augment.json's policy
  // Data parallelism: this process delivers only its share of every batch, the contiguous rows
  // [count x rank / ranks, count x (rank + 1) / ranks) of the batch all ranks agree on (same order,
  // same augmentation keys), so the union over ranks is exactly the one-process batch.
  int shard_rank = 0;
  int shard_count = 1;

  // Options for evaluating a split: no augmentation, no shuffling.
  static LoaderOptions evaluation(std::filesystem::path data_dir, std::string split, std::int64_t batch_size = 64);
};

struct Batch {
  at::Tensor images;        // [N, 3, S, S] float32, normalised RGB (LoaderOptions::normalization) (N = batch_size but the last)
  at::Tensor labels;        // [N] int64 class indices
  at::Tensor indices;       // [N] int64 rows of the image cache: which samples these are
  std::int64_t global_count = 0;  // samples of the whole batch over all shards (N when not sharded)
  std::int64_t epoch = 0;
  std::int64_t number = 0;  // position of the batch in its epoch
};

// Delivers an epoch of a split as batches from the augment stage's memory-mapped image cache.
//
// Determinism: the order of epoch e is a seeded shuffle that depends only on (seed, e); the pixels
// of a sample depend only on (seed, e, its cache row) (augment_pipeline.h). So the batches of an
// epoch are identical whatever the number of workers or the timing.
//
// Threads and memory: `workers` threads each build whole batches (augment + normalise straight into
// the batch tensor). At most `prefetch` batches are being built or waiting at any time, and at most
// `prefetch` more image blocks are kept for reuse (buffer_pool.h), so the loader's own memory is
// bounded by 2 x prefetch x batch_size x 3 x S x S x 4 bytes (plus the batches its user holds) and
// the mapped cache (shared, evictable page cache). OpenCV runs single-threaded in this process (the workers are the
// parallelism) and the workers use no torch parallelism, so the only other threads are the
// caller's: a trainer using `budget` intra-op threads beside `budget` workers does not
// oversubscribe in steady state, because workers block once the prefetch queue is full, and the
// trainer waits in next() when they are behind.
class BatchLoader {
 public:
  explicit BatchLoader(LoaderOptions options);  // throws std::runtime_error for a missing cache
  ~BatchLoader();                               // stops and joins the workers
  BatchLoader(const BatchLoader&) = delete;
  BatchLoader& operator=(const BatchLoader&) = delete;

  std::int64_t samples() const;
  std::int64_t batches_per_epoch() const;
  const std::vector<std::string>& classes() const;
  int image_size() const;
  int workers() const;
  int prefetch() const;

  // Starts (or restarts) epoch `epoch`; batches of an unfinished epoch are discarded.
  void start_epoch(std::int64_t epoch);
  // The next batch of the current epoch, in order; nullopt after the last. Rethrows a worker's
  // error (e.g. a corrupt cache). Throws std::logic_error before the first start_epoch.
  std::optional<Batch> next();

  // The sample order of an epoch (cache rows), as next() will deliver it.
  std::vector<std::int64_t> epoch_order(std::int64_t epoch) const;
  // The most batches that were ever built-or-waiting at once; never above prefetch().
  int peak_in_flight() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace petal
