#pragma once
#include <array>
#include <opencv2/core.hpp>
#include <string>

namespace petal::augment {

// Per-channel statistics a network's weights were trained with, applied after scaling pixels
// to [0, 1]: out = (v / 255 - mean[c]) / std[c], channels in RGB order.
struct Normalization {
  std::array<double, 3> mean{};
  std::array<double, 3> std{};

  static Normalization imagenet();   // torchvision's: mean (0.485, 0.456, 0.406), std (0.229, 0.224, 0.225)
  static Normalization inception();  // mean 0.5, std 0.5: [-1, 1] (TensorFlow-trained weights, e.g. EfficientNet-Lite)
  // "imagenet" or "inception"; throws std::invalid_argument naming the choices otherwise.
  static Normalization named(const std::string& name);
};

// The normalised value of every (channel, 8-bit value), computed once in double, so every pixel
// costs one lookup and equals static_cast<float>((v / 255.0 - mean) / std) exactly.
class NormalizationTable {
 public:
  explicit NormalizationTable(const Normalization& statistics = Normalization::imagenet());
  float operator()(int channel, int value) const { return values_[channel][value]; }

 private:
  float values_[3][256];
};

// Normalisation of a uint8 RGB HWC image (CV_8UC3, any size) into floats.
// `out` receives 3 * rows * cols floats: planar CHW (all R, then G, then B) by default, or
// interleaved HWC when `channels_last` (the memory order of a channels-last NCHW tensor).
void normalize_into(const cv::Mat& rgb, float* out, bool channels_last = false,
                    const NormalizationTable& table = NormalizationTable());

}  // namespace petal::augment
