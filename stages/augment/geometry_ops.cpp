#include "stages/augment/geometry_ops.h"

#include <opencv2/imgproc.hpp>

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace petal::augment {

cv::Mat resize_to(const cv::Mat& image, cv::Size size) {
  if (image.size() == size) return image.clone();
  const bool shrinking = size.width < image.cols && size.height < image.rows;
  cv::Mat out;
  cv::resize(image, out, size, 0, 0, shrinking ? cv::INTER_AREA : cv::INTER_LINEAR);
  return out;
}

cv::Mat resize_short_side(const cv::Mat& image, int short_side) {
  const int shorter = std::min(image.cols, image.rows);
  if (shorter == short_side) return image.clone();
  const double factor = static_cast<double>(short_side) / shorter;
  // The short side is exact; the long side is rounded, never below short_side.
  const int w = image.cols <= image.rows ? short_side : std::max(short_side, static_cast<int>(std::lround(image.cols * factor)));
  const int h = image.rows < image.cols ? short_side : std::max(short_side, static_cast<int>(std::lround(image.rows * factor)));
  return resize_to(image, cv::Size(w, h));
}

cv::Mat center_crop(const cv::Mat& image, int side) {
  if (image.cols < side || image.rows < side) {
    throw std::invalid_argument("center_crop: image " + std::to_string(image.cols) + "x" + std::to_string(image.rows) +
                                " is smaller than " + std::to_string(side));
  }
  return image(cv::Rect((image.cols - side) / 2, (image.rows - side) / 2, side, side)).clone();
}

cv::Mat crop_resize(const cv::Mat& image, const cv::Rect& rect, int side) {
  return resize_to(image(rect), cv::Size(side, side));
}

cv::Mat eval_view(const cv::Mat& image, int image_size, int eval_resize) {
  // After resizing the short side to eval_resize, a centre square of image_size keeps the
  // fraction image_size / eval_resize of the short side: take that square from the source.
  const int shorter = std::min(image.cols, image.rows);
  const int side = std::max(1, static_cast<int>(std::lround(static_cast<double>(shorter) * image_size / eval_resize)));
  const cv::Rect rect((image.cols - side) / 2, (image.rows - side) / 2, side, side);
  return crop_resize(image, rect, image_size);
}

cv::Rect random_resized_crop_rect(cv::Size size, double min_area, Rng& rng) {
  const double area = static_cast<double>(size.width) * size.height;
  constexpr double kMinRatio = 3.0 / 4.0, kMaxRatio = 4.0 / 3.0;
  for (int attempt = 0; attempt < 10; ++attempt) {
    const double target = area * rng.uniform(min_area, 1.0);
    const double ratio = rng.log_uniform(kMinRatio, kMaxRatio);
    const int w = static_cast<int>(std::lround(std::sqrt(target * ratio)));
    const int h = static_cast<int>(std::lround(std::sqrt(target / ratio)));
    if (w > 0 && h > 0 && w <= size.width && h <= size.height) {
      const int y = static_cast<int>(rng.below(static_cast<std::uint64_t>(size.height - h + 1)));
      const int x = static_cast<int>(rng.below(static_cast<std::uint64_t>(size.width - w + 1)));
      return cv::Rect(x, y, w, h);
    }
  }
  // Fallback (as torchvision): the whole image, trimmed to the nearest allowed aspect ratio.
  int w = size.width, h = size.height;
  const double ratio = static_cast<double>(w) / h;
  if (ratio < kMinRatio) h = static_cast<int>(std::lround(w / kMinRatio));
  else if (ratio > kMaxRatio) w = static_cast<int>(std::lround(h * kMaxRatio));
  return cv::Rect((size.width - w) / 2, (size.height - h) / 2, w, h);
}

cv::Mat hflip(const cv::Mat& image) {
  cv::Mat out;
  cv::flip(image, out, 1);
  return out;
}

cv::Mat vflip(const cv::Mat& image) {
  cv::Mat out;
  cv::flip(image, out, 0);
  return out;
}

cv::Mat affine(const cv::Mat& image, double degrees, double scale, double dx, double dy) {
  // Centre of rotation in pixel coordinates: (w-1)/2 keeps a 180 degree turn an exact flip.
  const cv::Point2f centre(static_cast<float>((image.cols - 1) / 2.0), static_cast<float>((image.rows - 1) / 2.0));
  cv::Mat m = cv::getRotationMatrix2D(centre, degrees, scale);
  m.at<double>(0, 2) += dx;
  m.at<double>(1, 2) += dy;
  cv::Mat out;
  cv::warpAffine(image, out, m, image.size(), cv::INTER_LINEAR, cv::BORDER_REFLECT_101);
  return out;
}

WarpField identity_field(cv::Size size) {
  WarpField field{cv::Mat(size, CV_32FC1), cv::Mat(size, CV_32FC1)};
  for (int y = 0; y < size.height; ++y) {
    float* mx = field.map_x.ptr<float>(y);
    float* my = field.map_y.ptr<float>(y);
    for (int x = 0; x < size.width; ++x) {
      mx[x] = static_cast<float>(x);
      my[x] = static_cast<float>(y);
    }
  }
  return field;
}

void add_optical_distortion(WarpField& field, double k) {
  const double cx = (field.map_x.cols - 1) / 2.0, cy = (field.map_x.rows - 1) / 2.0;
  const double radius = std::max(1.0, std::sqrt(cx * cx + cy * cy));
  for (int y = 0; y < field.map_x.rows; ++y) {
    float* mx = field.map_x.ptr<float>(y);
    float* my = field.map_y.ptr<float>(y);
    for (int x = 0; x < field.map_x.cols; ++x) {
      // Distort the field's current source point, so the distortions compose.
      const double u = (mx[x] - cx) / radius, v = (my[x] - cy) / radius;
      const double factor = 1.0 + k * (u * u + v * v);
      mx[x] = static_cast<float>(cx + u * factor * radius);
      my[x] = static_cast<float>(cy + v * factor * radius);
    }
  }
}

void add_elastic_distortion(WarpField& field, double max_shift, Rng& rng) {
  constexpr int kGrid = 6;
  cv::Mat coarse[2] = {cv::Mat(kGrid, kGrid, CV_32FC1), cv::Mat(kGrid, kGrid, CV_32FC1)};
  for (cv::Mat& grid : coarse) {
    for (int i = 0; i < kGrid * kGrid; ++i) grid.at<float>(i / kGrid, i % kGrid) = static_cast<float>(rng.uniform(-1, 1));
  }
  cv::Mat fine[2];
  for (int c = 0; c < 2; ++c) {
    cv::resize(coarse[c], fine[c], field.map_x.size(), 0, 0, cv::INTER_CUBIC);
    // Bicubic overshoot can exceed 1 a little; clamp so max_shift is a true bound.
    cv::min(cv::max(fine[c], -1.0), 1.0, fine[c]);
  }
  cv::scaleAdd(fine[0], max_shift, field.map_x, field.map_x);
  cv::scaleAdd(fine[1], max_shift, field.map_y, field.map_y);
}

cv::Mat remap(const cv::Mat& image, const WarpField& field) {
  cv::Mat out;
  cv::remap(image, out, field.map_x, field.map_y, cv::INTER_LINEAR, cv::BORDER_REFLECT_101);
  return out;
}

}  // namespace petal::augment
