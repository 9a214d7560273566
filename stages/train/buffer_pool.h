#pragma once
#include <algorithm>
#include <cstddef>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <new>
#include <vector>

namespace petal {

// Recycles the equally sized, 64-byte aligned memory blocks behind the loader's batch tensors.
//
// Why: a batch of 64 x 3 x 224 x 224 floats is 38.5 MB; glibc serves an allocation that large
// with a fresh mmap and returns it with munmap, so every batch would page-fault ~9,400 zeroed
// pages: measured at over a quarter of the loader's time. Blocks come back here when the last
// tensor using them is destroyed (the tensor's deleter holds a shared_ptr to the pool, so a batch
// may outlive its loader).
//
// Bound: at most `max_idle` blocks are kept idle; further returned blocks are freed. The blocks
// in use are bounded by the caller (the loader's prefetch depth plus the batches its user holds).
class BufferPool {
 public:
  BufferPool(std::size_t bytes, std::size_t max_idle) : bytes_(round_up(bytes)), max_idle_(max_idle) {}
  ~BufferPool() {
    for (void* block : idle_) std::free(block);
  }
  BufferPool(const BufferPool&) = delete;
  BufferPool& operator=(const BufferPool&) = delete;

  std::size_t bytes() const { return bytes_; }

  void* acquire() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (!idle_.empty()) {
        void* block = idle_.back();
        idle_.pop_back();
        return block;
      }
    }
    void* block = std::aligned_alloc(64, bytes_);
    if (!block) throw std::bad_alloc();
    return block;
  }

  void release(void* block) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (idle_.size() < max_idle_) {
        idle_.push_back(block);
        return;
      }
    }
    std::free(block);
  }

  std::size_t idle() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return idle_.size();
  }

 private:
  static std::size_t round_up(std::size_t n) { return (std::max<std::size_t>(n, 1) + 63) / 64 * 64; }  // aligned_alloc's rule

  std::size_t bytes_;
  std::size_t max_idle_;
  mutable std::mutex mutex_;
  std::vector<void*> idle_;
};

}  // namespace petal
