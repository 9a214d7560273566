#pragma once
#include <opencv2/core.hpp>

#include "stages/augment/rng.h"

namespace petal::augment {

// Geometric image operations. Invariants shared by every function here:
// - images are uint8 RGB, HWC (CV_8UC3), as stored in the image cache (colour order matters only
//   to the colour ops and the normalisation, not here);
// - inputs are never modified; each function returns a new image;
// - the result is a pure function of the arguments (randomness only through an explicit Rng);
// - pixels that a warp uncovers are filled by reflection (BORDER_REFLECT_101), so no black borders
//   appear that the network could learn from.

// Resampling: INTER_AREA when shrinking (no aliasing), INTER_LINEAR when enlarging.
cv::Mat resize_to(const cv::Mat& image, cv::Size size);
// Resizes so that the shorter side is `short_side`, keeping the aspect ratio.
cv::Mat resize_short_side(const cv::Mat& image, int short_side);
// The centred `side` x `side` square; the image must be at least that large.
cv::Mat center_crop(const cv::Mat& image, int side);
// Crops `rect` (inside the image) and resizes it to side x side in one resampling.
cv::Mat crop_resize(const cv::Mat& image, const cv::Rect& rect, int side);

// Evaluation view: the centre square that `resize short side to eval_resize, then centre crop
// image_size` would keep, taken from the source and resized once to image_size x image_size.
cv::Mat eval_view(const cv::Mat& image, int image_size, int eval_resize);

// torchvision's RandomResizedCrop rectangle: area in [min_area, 1] of the image, aspect ratio
// log-uniform in [3/4, 4/3], up to 10 tries, then the largest centred rectangle of a valid ratio.
cv::Rect random_resized_crop_rect(cv::Size size, double min_area, Rng& rng);

cv::Mat hflip(const cv::Mat& image);  // pixel (x, y) -> (w-1-x, y)
cv::Mat vflip(const cv::Mat& image);  // pixel (x, y) -> (x, h-1-y)

// Rotation by `degrees` (counter-clockwise as displayed) and zoom by `scale`, both about the image
// centre, then a shift by (dx, dy) pixels; one resampling, same size. Integer shifts with no
// rotation or zoom move pixels exactly: (x, y) -> (x+dx, y+dy).
cv::Mat affine(const cv::Mat& image, double degrees, double scale, double dx, double dy);
inline cv::Mat rotate(const cv::Mat& image, double degrees) { return affine(image, degrees, 1, 0, 0); }
inline cv::Mat translate(const cv::Mat& image, double dx, double dy) { return affine(image, 0, 1, dx, dy); }
inline cv::Mat zoom(const cv::Mat& image, double scale) { return affine(image, 0, scale, 0, 0); }

// A sampling field for cv::remap: output pixel (x, y) takes the source at (map_x, map_y). Elastic
// and optical distortions add to one field so that both cost a single resampling.
struct WarpField {
  cv::Mat map_x;  // CV_32FC1
  cv::Mat map_y;
};
WarpField identity_field(cv::Size size);
// Barrel (k > 0) or pincushion (k < 0) distortion: with r the distance from the centre in units of
// the half-diagonal, the source of an output pixel lies at radius r * (1 + k r^2).
void add_optical_distortion(WarpField& field, double k);
// Smooth random displacement of at most `max_shift` pixels in x and y: a 6x6 grid of uniform
// values in [-1, 1] drawn from `rng`, interpolated bicubically over the image.
void add_elastic_distortion(WarpField& field, double max_shift, Rng& rng);
cv::Mat remap(const cv::Mat& image, const WarpField& field);

}  // namespace petal::augment
