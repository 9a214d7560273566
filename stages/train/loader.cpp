#include "stages/train/loader.h"

#include <ATen/ops/empty.h>
#include <ATen/ops/from_blob.h>
#include <opencv2/core.hpp>

#include <algorithm>
#include <condition_variable>
#include <exception>
#include <map>
#include <mutex>
#include <stdexcept>
#include <thread>

#include "stages/augment/augment_config.h"
#include "stages/augment/augment_pipeline.h"
#include "stages/augment/image_cache.h"
#include "stages/augment/normalize.h"
#include "stages/augment/rng.h"
#include "stages/train/buffer_pool.h"

namespace petal {

LoaderOptions LoaderOptions::evaluation(std::filesystem::path data_dir, std::string split, std::int64_t batch_size) {
  LoaderOptions options;
  options.data_dir = std::move(data_dir);
  options.split = std::move(split);
  options.augment = false;
  options.shuffle = false;
  options.batch_size = batch_size;
  return options;
}

struct BatchLoader::Impl {
  struct Ready {
    Batch batch;
    std::exception_ptr error;
  };

  LoaderOptions options;
  augment::ImageCache cache;
  augment::AugmentSettings settings;
  augment::NormalizationTable normalization;
  augment::Policy policy;
  std::uint64_t seed = 0;
  std::vector<std::int64_t> rows;  // the split's cache rows, in cache order
  std::int64_t batches = 0;
  int worker_count = 1;
  int prefetch = 2;
  std::shared_ptr<BufferPool> pool;  // the images' memory; shared with the deleters of live batches

  // Shared state, guarded by `mutex`. Invariant: claimed - delivered <= prefetch, counting every
  // batch a worker has started and the consumer has not taken yet.
  std::mutex mutex;
  std::condition_variable work_cv;   // workers: a batch may be claimed, or stop
  std::condition_variable ready_cv;  // consumer: a batch is ready
  std::condition_variable idle_cv;   // start_epoch: no worker is building
  bool stop = false;
  bool started = false;
  std::uint64_t generation = 0;      // bumped by start_epoch; stale batches are dropped
  std::int64_t epoch = 0;
  std::vector<std::int64_t> order;   // read by busy workers without the lock: only replaced when busy == 0
  std::int64_t claimed = 0;
  std::int64_t delivered = 0;
  int busy = 0;
  int peak = 0;
  std::map<std::int64_t, Ready> ready;
  std::vector<std::thread> threads;

  explicit Impl(LoaderOptions o)
      : options(std::move(o)), cache(options.data_dir), settings(augment::AugmentSettings::read(options.data_dir)),
        normalization(options.normalization) {
    if (options.batch_size < 1) throw std::invalid_argument("loader: batch_size must be at least 1");
    if (options.shard_count < 1 || options.shard_rank < 0 || options.shard_rank >= options.shard_count) {
      throw std::invalid_argument("loader: shard_rank must be in [0, shard_count)");
    }
    policy = options.policy.value_or(settings.policy);
    seed = options.seed.value_or(settings.seed);
    for (std::size_t i : cache.indices_of(options.split)) rows.push_back(static_cast<std::int64_t>(i));
    const auto n = static_cast<std::int64_t>(rows.size());
    batches = options.drop_last ? n / options.batch_size : (n + options.batch_size - 1) / options.batch_size;
    const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    worker_count = options.workers > 0 ? options.workers : cores;
    prefetch = options.prefetch > 0 ? options.prefetch : 2 * worker_count;
    const std::int64_t side = settings.image_size;
    pool = std::make_shared<BufferPool>(static_cast<std::size_t>(options.batch_size * 3 * side * side) * sizeof(float),
                                        static_cast<std::size_t>(prefetch));
    // The workers are the parallelism: OpenCV's own thread pool would multiply the threads.
    cv::setNumThreads(1);
    for (int t = 0; t < worker_count; ++t) threads.emplace_back([this] { work(); });
  }

  ~Impl() {
    {
      std::lock_guard<std::mutex> lock(mutex);
      stop = true;
    }
    work_cv.notify_all();
    for (auto& t : threads) t.join();
  }

  std::vector<std::int64_t> order_of(std::int64_t e) const {
    std::vector<std::int64_t> out = rows;
    if (options.shuffle) {
      augment::Rng rng(augment::stream_seed(seed, static_cast<std::uint64_t>(e), 0,
                                            static_cast<std::uint64_t>(augment::Stream::Shuffle)));
      for (std::size_t i = out.size(); i > 1; --i) std::swap(out[i - 1], out[rng.below(i)]);
    }
    return out;
  }

  Batch build(std::int64_t number, std::int64_t e) const {
    const std::int64_t size = settings.image_size;
    const std::int64_t global_first = number * options.batch_size;
    const std::int64_t global_count =
        std::min<std::int64_t>(options.batch_size, static_cast<std::int64_t>(order.size()) - global_first);
    const std::int64_t first = global_first + global_count * options.shard_rank / options.shard_count;
    const std::int64_t count = global_first + global_count * (options.shard_rank + 1) / options.shard_count - first;
    Batch batch;
    batch.epoch = e;
    batch.number = number;
    batch.global_count = global_count;
    // NCHW sizes; strides of contiguous NCHW or of channels-last (NHWC memory).
    const std::vector<std::int64_t> strides = options.channels_last
                                                  ? std::vector<std::int64_t>{3 * size * size, 1, 3 * size, 3}
                                                  : std::vector<std::int64_t>{3 * size * size, size * size, size, 1};
    void* block = pool->acquire();
    batch.images = at::from_blob(block, {count, 3, size, size}, strides,
                                 [keep = pool](void* p) { keep->release(p); }, at::TensorOptions().dtype(at::kFloat));
    batch.labels = at::empty({count}, at::TensorOptions().dtype(at::kLong));
    batch.indices = at::empty({count}, at::TensorOptions().dtype(at::kLong));
    float* pixels = batch.images.data_ptr<float>();
    std::int64_t* labels = batch.labels.data_ptr<std::int64_t>();
    std::int64_t* indices = batch.indices.data_ptr<std::int64_t>();
    const std::int64_t per_sample = 3 * size * size;  // NCHW and NHWC both keep a sample contiguous
    for (std::int64_t j = 0; j < count; ++j) {
      const std::int64_t row = order[static_cast<std::size_t>(first + j)];
      const cv::Mat source = cache.image(static_cast<std::size_t>(row));
      const cv::Mat sample =
          options.augment
              ? augment::augment_sample(source, policy,
                                        augment::SampleKey{seed, static_cast<std::uint64_t>(e), static_cast<std::uint64_t>(row)},
                                        settings.image_size, settings.eval_resize)
              : augment::eval_transform(source, settings.image_size, settings.eval_resize);
      augment::normalize_into(sample, pixels + j * per_sample, options.channels_last, normalization);
      cache.release(static_cast<std::size_t>(row));
      labels[j] = cache.entry(static_cast<std::size_t>(row)).label;
      indices[j] = row;
    }
    return batch;
  }

  void work() {
    std::unique_lock<std::mutex> lock(mutex);
    while (true) {
      work_cv.wait(lock, [&] { return stop || (started && claimed < batches && claimed < delivered + prefetch); });
      if (stop) return;
      const std::int64_t number = claimed++;
      const std::uint64_t gen = generation;
      const std::int64_t e = epoch;
      ++busy;
      peak = std::max(peak, static_cast<int>(claimed - delivered));
      lock.unlock();
      Ready result;
      try {
        result.batch = build(number, e);
      } catch (...) {
        result.error = std::current_exception();
      }
      lock.lock();
      --busy;
      if (gen == generation) ready.emplace(number, std::move(result));
      ready_cv.notify_all();
      idle_cv.notify_all();
    }
  }

  void start_epoch(std::int64_t e) {
    std::unique_lock<std::mutex> lock(mutex);
    ++generation;
    claimed = batches;  // no new claims while the old epoch's workers finish
    idle_cv.wait(lock, [&] { return busy == 0; });
    ready.clear();
    order = order_of(e);
    epoch = e;
    claimed = 0;
    delivered = 0;
    started = true;
    lock.unlock();
    work_cv.notify_all();
  }

  std::optional<Batch> next() {
    std::unique_lock<std::mutex> lock(mutex);
    if (!started) throw std::logic_error("BatchLoader::next: call start_epoch first");
    if (delivered >= batches) return std::nullopt;
    const std::int64_t number = delivered;
    ready_cv.wait(lock, [&] { return ready.count(number) > 0; });
    auto node = ready.extract(number);
    ++delivered;
    lock.unlock();
    work_cv.notify_all();
    if (node.mapped().error) std::rethrow_exception(node.mapped().error);
    return std::move(node.mapped().batch);
  }
};

BatchLoader::BatchLoader(LoaderOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {}
BatchLoader::~BatchLoader() = default;

std::int64_t BatchLoader::samples() const { return static_cast<std::int64_t>(impl_->rows.size()); }
std::int64_t BatchLoader::batches_per_epoch() const { return impl_->batches; }
const std::vector<std::string>& BatchLoader::classes() const { return impl_->cache.classes(); }
int BatchLoader::image_size() const { return impl_->settings.image_size; }
int BatchLoader::workers() const { return impl_->worker_count; }
int BatchLoader::prefetch() const { return impl_->prefetch; }
void BatchLoader::start_epoch(std::int64_t epoch) { impl_->start_epoch(epoch); }
std::optional<Batch> BatchLoader::next() { return impl_->next(); }
std::vector<std::int64_t> BatchLoader::epoch_order(std::int64_t epoch) const { return impl_->order_of(epoch); }

int BatchLoader::peak_in_flight() const {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  return impl_->peak;
}

}  // namespace petal
