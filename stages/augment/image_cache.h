#pragma once
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <opencv2/core.hpp>
#include <string>
#include <vector>

namespace petal::augment {

// The decoded-image cache: every image of a dataset decoded once and stored raw, so the loader
// reads pixels straight from a memory mapping with no decoding, no copies and no allocation.
//
// Files (in one folder):
//   images.bin   the pixels: uint8 RGB, HWC, rows contiguous; each image starts at a multiple of
//                64 bytes (cache-line aligned), the gaps are zero
//   index.tsv    header "offset\theight\twidth\tlabel\tsplit\tpath", one line per image, in the order
//                they were added; label = class index (line of classes.txt), path as in split.tsv
//   classes.txt  class names, one a line
//   cache.json   {"format": 1, "data", "index", "dtype", "layout", "channels", "colour_order",
//                 "alignment", "images", "bytes", "short_side", "classes"}
// The files are written once and never modified: readers may map them while others read too.

struct CacheEntry {
  std::uint64_t offset = 0;
  int height = 0;
  int width = 0;
  int label = 0;
  std::string split;
  std::string path;
  std::uint64_t bytes() const { return static_cast<std::uint64_t>(height) * width * 3; }
};

constexpr std::uint64_t kCacheAlignment = 64;

class ImageCacheWriter {
 public:
  // Creates `dir`/images.bin; `short_side` is recorded in cache.json for readers.
  ImageCacheWriter(const std::filesystem::path& dir, std::vector<std::string> classes, int short_side);
  ~ImageCacheWriter();
  ImageCacheWriter(const ImageCacheWriter&) = delete;
  ImageCacheWriter& operator=(const ImageCacheWriter&) = delete;

  // Appends one uint8 RGB image (CV_8UC3). Not thread-safe: one writer appends in a fixed order.
  void add(const cv::Mat& rgb, int label, const std::string& split, const std::string& path);
  // Writes index.tsv, classes.txt and cache.json; throws std::runtime_error if a write failed.
  void finish();

  std::size_t count() const { return entries_.size(); }
  std::uint64_t bytes() const { return end_; }  // size of images.bin

 private:
  std::filesystem::path dir_;
  std::vector<std::string> classes_;
  int short_side_;
  std::FILE* data_ = nullptr;
  std::uint64_t end_ = 0;
  std::vector<CacheEntry> entries_;
};

class ImageCache {
 public:
  // Reads the index and maps images.bin read-only; throws std::runtime_error on a missing or
  // inconsistent cache (an entry past the end of the data, a label without a class).
  explicit ImageCache(const std::filesystem::path& dir);
  ~ImageCache();
  ImageCache(const ImageCache&) = delete;
  ImageCache& operator=(const ImageCache&) = delete;

  std::size_t size() const { return entries_.size(); }
  const CacheEntry& entry(std::size_t i) const { return entries_.at(i); }
  // A view of image i inside the mapping (no copy). The memory is read-only: never write to it
  // (OpenCV's Mat cannot express const; writing would crash).
  cv::Mat image(std::size_t i) const;
  // Unmaps image i's pages from this process (they stay in the page cache; the next image(i)
  // maps them again) once its pixels have been used. Without it every page an epoch touches
  // stays resident in this process: the whole cache, hundreds of MB, on top of the training.
  // Views of image i stay valid: reading one again faults its pages back in.
  void release(std::size_t i) const;
  const std::vector<std::string>& classes() const { return classes_; }
  // Indices of the entries of one split, in cache order.
  std::vector<std::size_t> indices_of(const std::string& split) const;
  int short_side() const { return short_side_; }
  std::uint64_t data_bytes() const { return mapped_size_; }

 private:
  std::vector<CacheEntry> entries_;
  std::vector<std::string> classes_;
  int short_side_ = 0;
  const unsigned char* mapped_ = nullptr;
  std::size_t mapped_size_ = 0;
};

}  // namespace petal::augment
