#include "stages/augment/image_cache.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>

namespace petal::augment {

using nlohmann::json;
namespace fs = std::filesystem;

namespace {

const char* const kIndexHeader = "offset\theight\twidth\tlabel\tsplit\tpath";

json describe(int images, std::uint64_t bytes, int short_side, const std::vector<std::string>& classes) {
  return json{{"format", 1},          {"data", "images.bin"},   {"index", "index.tsv"},  {"dtype", "uint8"},
              {"layout", "HWC"},      {"channels", 3},          {"colour_order", "RGB"}, {"alignment", kCacheAlignment},
              {"images", images},     {"bytes", bytes},         {"short_side", short_side}, {"classes", classes}};
}

}  // namespace

ImageCacheWriter::ImageCacheWriter(const fs::path& dir, std::vector<std::string> classes, int short_side)
    : dir_(dir), classes_(std::move(classes)), short_side_(short_side) {
  data_ = std::fopen((dir / "images.bin").c_str(), "wb");
  if (!data_) throw std::runtime_error("cannot create " + (dir / "images.bin").string());
}

ImageCacheWriter::~ImageCacheWriter() {
  if (data_) std::fclose(data_);
}

void ImageCacheWriter::add(const cv::Mat& rgb, int label, const std::string& split, const std::string& path) {
  if (rgb.type() != CV_8UC3) throw std::invalid_argument("image cache: expected a uint8 RGB image");
  static const char zeros[kCacheAlignment] = {};
  const std::uint64_t padding = (kCacheAlignment - end_ % kCacheAlignment) % kCacheAlignment;
  std::fwrite(zeros, 1, padding, data_);
  end_ += padding;
  CacheEntry entry{end_, rgb.rows, rgb.cols, label, split, path};
  const std::size_t row_bytes = static_cast<std::size_t>(rgb.cols) * 3;
  for (int y = 0; y < rgb.rows; ++y) std::fwrite(rgb.ptr<uchar>(y), 1, row_bytes, data_);
  end_ += entry.bytes();
  entries_.push_back(std::move(entry));
}

void ImageCacheWriter::finish() {
  const bool data_ok = std::ferror(data_) == 0;
  const bool closed = std::fclose(data_) == 0;
  data_ = nullptr;
  if (!data_ok || !closed) throw std::runtime_error("image cache: writing " + (dir_ / "images.bin").string() + " failed");
  std::ofstream index(dir_ / "index.tsv");
  index << kIndexHeader << '\n';
  for (const auto& e : entries_) {
    index << e.offset << '\t' << e.height << '\t' << e.width << '\t' << e.label << '\t' << e.split << '\t' << e.path << '\n';
  }
  std::ofstream classes(dir_ / "classes.txt");
  for (const auto& name : classes_) classes << name << '\n';
  std::ofstream(dir_ / "cache.json") << describe(static_cast<int>(entries_.size()), end_, short_side_, classes_).dump(2) << "\n";
  index.close();
  classes.close();
  if (!index || !classes) throw std::runtime_error("image cache: writing the index in " + dir_.string() + " failed");
}

ImageCache::ImageCache(const fs::path& dir) {
  std::ifstream meta_in(dir / "cache.json");
  if (!meta_in) throw std::runtime_error("no image cache in " + dir.string() + " (cache.json missing)");
  const json meta = json::parse(meta_in);
  if (meta.value("format", 0) != 1 || meta.value("colour_order", "") != "RGB" || meta.value("layout", "") != "HWC") {
    throw std::runtime_error("image cache in " + dir.string() + " has an unsupported format");
  }
  classes_ = meta.at("classes").get<std::vector<std::string>>();
  short_side_ = meta.at("short_side").get<int>();

  std::ifstream index(dir / "index.tsv");
  std::string line;
  if (!std::getline(index, line) || line != kIndexHeader) throw std::runtime_error("image cache: bad index.tsv in " + dir.string());
  while (std::getline(index, line)) {
    std::istringstream fields(line);
    CacheEntry e;
    std::string offset, height, width, label;
    std::getline(fields, offset, '\t');
    std::getline(fields, height, '\t');
    std::getline(fields, width, '\t');
    std::getline(fields, label, '\t');
    std::getline(fields, e.split, '\t');
    std::getline(fields, e.path);
    e.offset = std::stoull(offset);
    e.height = std::stoi(height);
    e.width = std::stoi(width);
    e.label = std::stoi(label);
    if (e.label < 0 || e.label >= static_cast<int>(classes_.size())) {
      throw std::runtime_error("image cache: " + e.path + " has label " + label + " but there are " +
                               std::to_string(classes_.size()) + " classes");
    }
    entries_.push_back(std::move(e));
  }

  const fs::path data = dir / "images.bin";
  const int fd = ::open(data.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw std::runtime_error("cannot open " + data.string());
  struct stat info{};
  ::fstat(fd, &info);
  mapped_size_ = static_cast<std::size_t>(info.st_size);
  for (const auto& e : entries_) {  // checked before mapping, so a throw leaks no mapping
    if (e.offset + e.bytes() > mapped_size_) {
      ::close(fd);
      throw std::runtime_error("image cache: " + e.path + " lies past the end of " + data.string());
    }
  }
  if (mapped_size_ > 0) {
    void* map = ::mmap(nullptr, mapped_size_, PROT_READ, MAP_SHARED, fd, 0);
    if (map == MAP_FAILED) {
      ::close(fd);
      throw std::runtime_error("cannot map " + data.string());
    }
    mapped_ = static_cast<const unsigned char*>(map);
  }
  ::close(fd);  // the mapping keeps the file alive
}

ImageCache::~ImageCache() {
  if (mapped_) ::munmap(const_cast<unsigned char*>(mapped_), mapped_size_);
}

cv::Mat ImageCache::image(std::size_t i) const {
  const CacheEntry& e = entries_.at(i);
  return cv::Mat(e.height, e.width, CV_8UC3, const_cast<unsigned char*>(mapped_ + e.offset));
}

void ImageCache::release(std::size_t i) const {
  const CacheEntry& e = entries_.at(i);
  static const std::uint64_t page = static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
  const std::uint64_t first = e.offset / page * page;
  const std::uint64_t end = std::min<std::uint64_t>((e.offset + e.bytes() + page - 1) / page * page, mapped_size_);
  if (!mapped_ || end <= first) return;
  // A page shared with a neighbouring image is dropped too; a reader of that image faults it back
  // in from the page cache (the mapping is read-only and the file never changes).
  ::madvise(const_cast<unsigned char*>(mapped_ + first), end - first, MADV_DONTNEED);
}

std::vector<std::size_t> ImageCache::indices_of(const std::string& split) const {
  std::vector<std::size_t> out;
  for (std::size_t i = 0; i < entries_.size(); ++i) {
    if (entries_[i].split == split) out.push_back(i);
  }
  return out;
}

}  // namespace petal::augment
