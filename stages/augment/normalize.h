#pragma once
#include <opencv2/core.hpp>

namespace petal::augment {

// ImageNet normalisation of a uint8 RGB HWC image (CV_8UC3, any size) into floats:
//   out = (v / 255 - mean[c]) / std[c]   (mean, std: augment_config.h)
// computed in double once per (channel, value) into a 3 x 256 table, so every pixel costs one
// lookup and the result for a value is exactly static_cast<float>((v / 255.0 - mean) / std).
//
// `out` receives 3 * rows * cols floats: planar CHW (all R, then G, then B) by default, or
// interleaved HWC when `channels_last` (the memory order of a channels-last NCHW tensor).
void normalize_into(const cv::Mat& rgb, float* out, bool channels_last = false);

// The table: normalization_table()[c][v].
const float (&normalization_table())[3][256];

}  // namespace petal::augment
