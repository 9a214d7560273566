#include "stages/augment/normalize.h"

#include <stdexcept>

namespace petal::augment {

Normalization Normalization::imagenet() { return {{0.485, 0.456, 0.406}, {0.229, 0.224, 0.225}}; }

Normalization Normalization::inception() { return {{0.5, 0.5, 0.5}, {0.5, 0.5, 0.5}}; }

Normalization Normalization::named(const std::string& name) {
  if (name == "imagenet") return imagenet();
  if (name == "inception") return inception();
  throw std::invalid_argument("unknown normalization '" + name + "'; use \"imagenet\" or \"inception\"");
}

NormalizationTable::NormalizationTable(const Normalization& s) {
  for (int c = 0; c < 3; ++c) {
    for (int v = 0; v < 256; ++v) values_[c][v] = static_cast<float>((v / 255.0 - s.mean[c]) / s.std[c]);
  }
}

void normalize_into(const cv::Mat& rgb, float* out, bool channels_last, const NormalizationTable& t) {
  if (rgb.type() != CV_8UC3) throw std::invalid_argument("normalize_into: expected a uint8 RGB image (CV_8UC3)");
  const int rows = rgb.rows, cols = rgb.cols;
  const std::size_t plane = static_cast<std::size_t>(rows) * cols;
  for (int y = 0; y < rows; ++y) {
    const uchar* p = rgb.ptr<uchar>(y);
    if (channels_last) {
      float* o = out + static_cast<std::size_t>(y) * cols * 3;
      for (int x = 0; x < cols; ++x, p += 3, o += 3) {
        o[0] = t(0, p[0]);
        o[1] = t(1, p[1]);
        o[2] = t(2, p[2]);
      }
    } else {
      float* r = out + static_cast<std::size_t>(y) * cols;
      float* g = r + plane;
      float* b = g + plane;
      for (int x = 0; x < cols; ++x, p += 3) {
        r[x] = t(0, p[0]);
        g[x] = t(1, p[1]);
        b[x] = t(2, p[2]);
      }
    }
  }
}

}  // namespace petal::augment
