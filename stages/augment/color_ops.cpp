#include "stages/augment/color_ops.h"

#include <opencv2/imgproc.hpp>

#include <cmath>

#include "stages/augment/normalize.h"

namespace petal::augment {

namespace {

cv::Mat grey_of(const cv::Mat& image) {
  cv::Mat grey;
  cv::cvtColor(image, grey, cv::COLOR_RGB2GRAY);  // 0.299 R + 0.587 G + 0.114 B
  return grey;
}

}  // namespace

void adjust_brightness(cv::Mat& image, double factor) { image.convertTo(image, CV_8U, factor); }

void adjust_contrast(cv::Mat& image, double factor) {
  const double mean = cv::mean(grey_of(image))[0];
  image.convertTo(image, CV_8U, factor, (1.0 - factor) * mean);
}

void adjust_saturation(cv::Mat& image, double factor) {
  cv::Mat grey3;
  cv::cvtColor(grey_of(image), grey3, cv::COLOR_GRAY2RGB);
  cv::addWeighted(image, factor, grey3, 1.0 - factor, 0.0, image);
}

void shift_hue(cv::Mat& image, double turns) {
  // *_FULL conversions use all 256 values of a byte for the hue circle, so the shift wraps mod 256.
  const int steps = static_cast<int>(std::lround(turns * 256.0)) & 255;
  if (steps == 0) return;
  cv::Mat hsv;
  cv::cvtColor(image, hsv, cv::COLOR_RGB2HSV_FULL);
  cv::Mat table(1, 256, CV_8UC3);
  for (int v = 0; v < 256; ++v) table.at<cv::Vec3b>(0, v) = cv::Vec3b(static_cast<uchar>((v + steps) & 255), v, v);
  cv::LUT(hsv, table, hsv);
  cv::cvtColor(hsv, image, cv::COLOR_HSV2RGB_FULL);
}

void gaussian_blur(cv::Mat& image, double sigma) {
  const int k = 2 * static_cast<int>(std::ceil(3.0 * sigma)) + 1;
  cv::GaussianBlur(image, image, cv::Size(k, k), sigma, sigma, cv::BORDER_REFLECT_101);
}

void add_noise(cv::Mat& image, double sigma, Rng& rng) {
  // Sum of four 16-bit uniforms: mean 2 * 65535, standard deviation 65536 / sqrt(3) (to 1e-5).
  constexpr double kMean = 2.0 * 65535.0;
  const double scale = sigma * 255.0 * std::sqrt(3.0) / 65536.0;
  const int rows = image.rows, values_per_row = image.cols * image.channels();
  for (int y = 0; y < rows; ++y) {
    uchar* row = image.ptr<uchar>(y);
    for (int i = 0; i < values_per_row; ++i) {
      const std::uint64_t bits = rng.next();
      const double sum = static_cast<double>((bits & 0xffff) + ((bits >> 16) & 0xffff) + ((bits >> 32) & 0xffff) +
                                             (bits >> 48));
      row[i] = cv::saturate_cast<uchar>(row[i] + (sum - kMean) * scale);
    }
  }
}

cv::Scalar erase_fill() {
  const auto mean = Normalization::imagenet().mean;
  return cv::Scalar(std::round(mean[0] * 255), std::round(mean[1] * 255), std::round(mean[2] * 255));
}

cv::Rect random_erase_rect(cv::Size size, double max_area, Rng& rng) {
  constexpr double kMinArea = 0.02;
  const double area = static_cast<double>(size.width) * size.height;
  for (int attempt = 0; attempt < 10; ++attempt) {
    const double target = area * rng.uniform(kMinArea, std::max(kMinArea, max_area));
    const double ratio = rng.log_uniform(0.3, 3.3);
    const int h = static_cast<int>(std::lround(std::sqrt(target * ratio)));
    const int w = static_cast<int>(std::lround(std::sqrt(target / ratio)));
    if (h > 0 && w > 0 && h < size.height && w < size.width) {
      const int y = static_cast<int>(rng.below(static_cast<std::uint64_t>(size.height - h + 1)));
      const int x = static_cast<int>(rng.below(static_cast<std::uint64_t>(size.width - w + 1)));
      return cv::Rect(x, y, w, h);
    }
  }
  return cv::Rect();
}

void erase(cv::Mat& image, const cv::Rect& rect) {
  if (!rect.empty()) image(rect).setTo(erase_fill());
}

}  // namespace petal::augment
