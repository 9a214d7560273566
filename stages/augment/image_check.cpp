#include "stages/augment/image_check.h"

#include <opencv2/imgcodecs.hpp>

#include <fstream>
#include <vector>

namespace petal {

namespace {

bool ends_with(const std::vector<unsigned char>& data, std::initializer_list<unsigned char> tail, std::size_t slack) {
  // Some writers pad after the end marker; allow a few trailing bytes.
  const std::size_t n = tail.size();
  for (std::size_t end = data.size(); end >= n && data.size() - end <= slack; --end) {
    if (std::equal(tail.begin(), tail.end(), data.begin() + static_cast<std::ptrdiff_t>(end - n))) return true;
    if (end == n) break;
  }
  return false;
}

bool is_jpeg(const std::vector<unsigned char>& data) {
  return data.size() >= 3 && data[0] == 0xFF && data[1] == 0xD8 && data[2] == 0xFF;
}

bool is_png(const std::vector<unsigned char>& data) {
  return data.size() >= 8 && data[0] == 0x89 && data[1] == 'P' && data[2] == 'N' && data[3] == 'G';
}

}  // namespace

std::string image_bytes_problem(const std::vector<unsigned char>& data) {
  if (data.empty()) return "empty file";
  if (is_jpeg(data) && !ends_with(data, {0xFF, 0xD9}, 64)) return "truncated JPEG (no end-of-image marker)";
  if (is_png(data) && !ends_with(data, {'I', 'E', 'N', 'D', 0xAE, 0x42, 0x60, 0x82}, 64)) {
    return "truncated PNG (no IEND chunk)";
  }
  return {};
}

std::string check_image(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) return "unreadable";
  std::vector<unsigned char> data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (std::string problem = image_bytes_problem(data); !problem.empty()) return problem;
  const bool jpeg = is_jpeg(data), png = is_png(data);
  const cv::Mat image = cv::imdecode(data, cv::IMREAD_COLOR);
  if (image.empty()) return jpeg || png ? "corrupt image (cannot be decoded)" : "not an image OpenCV can decode";
  if (image.cols < 8 || image.rows < 8) return "image too small (" + std::to_string(image.cols) + "x" + std::to_string(image.rows) + ")";
  return {};
}

}  // namespace petal
