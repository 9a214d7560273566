#pragma once
// Test-time augmentation: class probabilities averaged over several views of each image, used by
// the evaluate stage (`tta`) and `petal predict --tta`. Views:
//   none  the evaluation view itself (short side to eval_resize, centre crop)
//   flip        that view and its mirror image (left-right): two forward passes, softmax averaged
//   crops       five crops of 7/8 of the view's side (the centre and the four corners), each
//               enlarged back to the side (bilinear, as the training crop enlarges): five passes
//   flip_crops  those five crops and their mirror images: ten passes
// Only a left-right mirror: the training policies flip horizontally, never vertically. The crops
// come from the evaluation view itself, so every mode works from the same cached pixels.
#include <torch/nn/module.h>
#include <torch/types.h>

#include <string>
#include <vector>

#include "stages/evaluate/tta_modes.h"
#include "stages/train/models/classifier.h"

namespace petal::evaluate {

// Softmax probabilities [N, classes] (float32, on the images' device) of `images` [N, 3, S, S],
// averaged over the views of `mode` (one of tta_modes(); another throws); `network` must be in eval mode.
torch::Tensor class_probabilities(models::ClassifierImpl& network, const torch::Tensor& images, const std::string& mode);

}  // namespace petal::evaluate
