#pragma once
// The test-time augmentation modes (test_time_augmentation.h computes them), in the order shown
// to users; torch-free, so that the evaluate stage's parameter check and `petal predict`'s option
// name the same list as the worker that runs them.
#include <string>
#include <vector>

namespace petal::evaluate {

inline const std::vector<std::string>& tta_modes() {
  static const std::vector<std::string> modes = {"none", "flip", "crops", "flip_crops"};
  return modes;
}

// One line for help texts.
inline const char* tta_help() {
  return "test-time augmentation: flip = each image and its mirror image; crops = five crops of 7/8 of the side "
         "(centre, corners) enlarged back; flip_crops = those and their mirror images; probabilities averaged "
         "(2, 5 or 10 times the inference time)";
}

}  // namespace petal::evaluate
