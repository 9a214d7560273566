#pragma once
// Test-time augmentation: class probabilities averaged over several views of each image, used by
// the evaluate stage (`tta`) and `petal predict --tta`. Views:
//   none  the evaluation view itself (short side to eval_resize, centre crop)
//   flip  that view and its mirror image (left-right): two forward passes, softmax averaged
// Only a left-right mirror: the training policies flip horizontally, never vertically.
#include <torch/nn/module.h>
#include <torch/types.h>

#include <string>
#include <vector>

#include "stages/train/models/classifier.h"

namespace petal::evaluate {

// The names `tta` accepts, in the order shown to users.
const std::vector<std::string>& tta_modes();

// Softmax probabilities [N, classes] (float32, on the images' device) of `images` [N, 3, S, S],
// averaged over the views of `mode` (one of tta_modes()); `network` must be in eval mode.
torch::Tensor class_probabilities(models::ClassifierImpl& network, const torch::Tensor& images, const std::string& mode);

}  // namespace petal::evaluate
