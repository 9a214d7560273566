#include "stages/augment/cache_builder.h"

#include <opencv2/core.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <stdexcept>
#include <thread>

#include "pipeline/dag/stage_kind.h"
#include "stages/augment/image_cache.h"
#include "stages/augment/image_decode.h"

namespace petal::augment {

namespace {

// Restores OpenCV's thread count on scope exit.
struct OpenCvThreads {
  int saved = cv::getNumThreads();
  explicit OpenCvThreads(int n) { cv::setNumThreads(n); }
  ~OpenCvThreads() { cv::setNumThreads(saved); }
};

struct Slot {
  cv::Mat image;
  std::string error;
  bool ready = false;
};

// Decoded images in flight, handed from the decoding threads to the in-order writer. Image i
// lives in slot i % window, and a decoder may start image i only once image i - window is
// written, so at most `window` decoded images exist at a time.
class ReorderWindow {
 public:
  explicit ReorderWindow(std::size_t window) : slots_(window) {}

  bool wait_for_room(std::size_t i) {  // false when stopping
    std::unique_lock<std::mutex> lock(mutex_);
    room_.wait(lock, [&] { return stop_ || i < written_ + slots_.size(); });
    return !stop_;
  }
  void put(std::size_t i, cv::Mat image, std::string error) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      slots_[i % slots_.size()] = Slot{std::move(image), std::move(error), true};
    }
    ready_.notify_all();
  }
  Slot take(std::size_t i) {
    std::unique_lock<std::mutex> lock(mutex_);
    Slot& slot = slots_[i % slots_.size()];
    ready_.wait(lock, [&] { return slot.ready; });
    Slot out = std::move(slot);
    slot = Slot{};
    ++written_;
    lock.unlock();
    room_.notify_all();
    return out;
  }
  void stop() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
    }
    room_.notify_all();
  }

 private:
  std::mutex mutex_;
  std::condition_variable room_, ready_;
  std::vector<Slot> slots_;
  std::size_t written_ = 0;
  bool stop_ = false;
};

}  // namespace

CacheBuildStats build_image_cache(const SplitTable& table, const std::filesystem::path& out_dir,
                                  const CacheBuildOptions& options, const std::function<bool()>& cancelled) {
  const auto start = std::chrono::steady_clock::now();
  // Parallelism comes from the decoding threads; nested OpenCV threads would oversubscribe.
  OpenCvThreads single(1);
  const std::size_t n = table.rows.size();
  const int threads = static_cast<int>(std::max<std::size_t>(1, std::min<std::size_t>(options.threads, std::max<std::size_t>(n, 1))));
  ReorderWindow window(static_cast<std::size_t>(threads) * 4);
  std::atomic<std::size_t> next{0};

  std::vector<std::thread> pool;
  auto join_all = [&] {
    window.stop();
    for (auto& t : pool) t.join();
    pool.clear();
  };
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&] {
      for (std::size_t i = next++; i < n; i = next++) {
        if (!window.wait_for_room(i)) return;
        const SplitRow& row = table.rows[i];
        try {
          window.put(i, decode_image(read_file_bytes(table.root / row.path), options.short_side, options.upscale), "");
        } catch (const std::exception& e) {
          window.put(i, cv::Mat(), e.what());
        }
      }
    });
  }

  ImageCacheWriter writer(out_dir, table.classes, options.short_side);
  try {
    for (std::size_t i = 0; i < n; ++i) {
      if (cancelled && cancelled()) throw StageCancelled();
      Slot slot = window.take(i);
      if (!slot.error.empty()) {
        throw std::runtime_error("cannot decode " + (table.root / table.rows[i].path).string() + ": " + slot.error);
      }
      const SplitRow& row = table.rows[i];
      writer.add(slot.image, row.label, row.split, row.path);
    }
  } catch (...) {
    join_all();
    throw;
  }
  join_all();
  writer.finish();
  CacheBuildStats stats;
  stats.images = writer.count();
  stats.bytes = writer.bytes();
  stats.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return stats;
}

}  // namespace petal::augment
