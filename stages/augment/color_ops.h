#pragma once
#include <opencv2/core.hpp>

#include "stages/augment/rng.h"

namespace petal::augment {

// Photometric image operations, in place on uint8 RGB HWC images (CV_8UC3). RGB order matters
// here: grey levels use ITU-R 601 luma weights (0.299 R + 0.587 G + 0.114 B, as PIL's "L") and
// hue is computed from RGB. Results are rounded and saturated to [0, 255]. Each is a pure function
// of the image and the arguments (randomness only through an explicit Rng).

// x -> x * factor
void adjust_brightness(cv::Mat& image, double factor);
// x -> m + factor * (x - m), m = the image's mean grey level
void adjust_contrast(cv::Mat& image, double factor);
// x -> g + factor * (x - g), g = the pixel's grey level (0 gives greyscale)
void adjust_saturation(cv::Mat& image, double factor);
// Rotates hue by `turns` of the colour wheel (0.5 = complementary colours), in HSV with 256 hue steps.
void shift_hue(cv::Mat& image, double turns);
// Gaussian blur with standard deviation `sigma` pixels; kernel side 2*ceil(3 sigma)+1.
void gaussian_blur(cv::Mat& image, double sigma);
// Adds zero-mean noise of standard deviation sigma * 255 to every channel value. The noise is
// the sum of four uniform variables (Irwin-Hall), a close Gaussian made of integer draws only,
// so it is identical on every platform.
void add_noise(cv::Mat& image, double sigma, Rng& rng);

// The fill of erased rectangles: the ImageNet mean colour, which normalises to 0 under ImageNet
// statistics (as torchvision's RandomErasing with value=0 applied after Normalize) and to nearly
// 0 under the inception ones.
cv::Scalar erase_fill();
// A random rectangle of area in [0.02, max_area] of the image and aspect ratio log-uniform in
// [0.3, 3.3] (torchvision's RandomErasing); an empty rectangle when 10 tries do not fit.
cv::Rect random_erase_rect(cv::Size size, double max_area, Rng& rng);
void erase(cv::Mat& image, const cv::Rect& rect);

}  // namespace petal::augment
