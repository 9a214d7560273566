#include "stages/augment/image_decode.h"

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include <algorithm>
#include <cstdio>
#include <memory>
#include <stdexcept>

#include "stages/augment/geometry_ops.h"
#include "stages/augment/image_check.h"

namespace petal::augment {

std::vector<unsigned char> read_file_bytes(const std::filesystem::path& path) {
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> file(std::fopen(path.c_str(), "rb"), std::fclose);
  if (!file) throw std::runtime_error("cannot open " + path.string());
  std::vector<unsigned char> bytes;
  std::fseek(file.get(), 0, SEEK_END);
  const long size = std::ftell(file.get());
  std::fseek(file.get(), 0, SEEK_SET);
  if (size < 0) throw std::runtime_error("cannot read " + path.string());
  bytes.resize(static_cast<std::size_t>(size));
  if (size > 0 && std::fread(bytes.data(), 1, bytes.size(), file.get()) != bytes.size()) {
    throw std::runtime_error("cannot read " + path.string());
  }
  return bytes;
}

std::optional<cv::Size> jpeg_size(const unsigned char* data, std::size_t size) {
  if (size < 4 || data[0] != 0xFF || data[1] != 0xD8) return std::nullopt;
  std::size_t p = 2;
  while (p + 4 <= size) {
    if (data[p] != 0xFF) return std::nullopt;
    const unsigned char marker = data[p + 1];
    if (marker == 0xFF) {  // fill byte
      ++p;
      continue;
    }
    if (marker == 0x01 || (marker >= 0xD0 && marker <= 0xD7)) {  // markers without a length
      p += 2;
      continue;
    }
    const std::size_t length = (static_cast<std::size_t>(data[p + 2]) << 8) | data[p + 3];
    if (length < 2) return std::nullopt;
    // SOF0..SOF15 carry the frame size; C4 (DHT), C8 (JPG) and CC (DAC) share the range but do not.
    if (marker >= 0xC0 && marker <= 0xCF && marker != 0xC4 && marker != 0xC8 && marker != 0xCC) {
      if (p + 9 > size) return std::nullopt;
      const int height = (data[p + 5] << 8) | data[p + 6];
      const int width = (data[p + 7] << 8) | data[p + 8];
      if (width <= 0 || height <= 0) return std::nullopt;
      return cv::Size(width, height);
    }
    if (marker == 0xDA || marker == 0xD9) return std::nullopt;  // scan data or end before a frame header
    p += 2 + length;
  }
  return std::nullopt;
}

cv::Mat decode_image(const std::vector<unsigned char>& bytes, int short_side, bool upscale) {
  int flags = cv::IMREAD_COLOR;
  if (const auto size = jpeg_size(bytes.data(), bytes.size())) {
    const int shorter = std::min(size->width, size->height);
    // The largest reduction that still leaves the short side at least short_side (libjpeg rounds
    // the reduced size up, so shorter / factor is a safe lower bound).
    if (shorter / 8 >= short_side) flags = cv::IMREAD_REDUCED_COLOR_8;
    else if (shorter / 4 >= short_side) flags = cv::IMREAD_REDUCED_COLOR_4;
    else if (shorter / 2 >= short_side) flags = cv::IMREAD_REDUCED_COLOR_2;
  }
  // A truncated JPEG would decode to a half-grey picture and an empty buffer is an OpenCV assertion.
  if (const std::string problem = image_bytes_problem(bytes); !problem.empty()) throw std::runtime_error(problem);
  const cv::Mat encoded(1, static_cast<int>(bytes.size()), CV_8UC1, const_cast<unsigned char*>(bytes.data()));
  cv::Mat bgr = cv::imdecode(encoded, flags);
  if (bgr.empty()) throw std::runtime_error("not an image OpenCV can decode");
  const int shorter = std::min(bgr.cols, bgr.rows);
  if (shorter > short_side || (upscale && shorter < short_side)) bgr = resize_short_side(bgr, short_side);
  cv::Mat rgb;
  cv::cvtColor(bgr, rgb, cv::COLOR_BGR2RGB);  // after the resize: fewer pixels to convert
  return rgb;
}

}  // namespace petal::augment
