#pragma once
// Grad-CAM (Selvaraju et al., 2017) on a classifier's last convolutional feature map.
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

#include "stages/train/models/classifier.h"

namespace petal::evaluate {

// For each class c of `classes`: ReLU(sum_k alpha_k A_k), where A = network.cam_graph(image).map
// (the last convolutional feature map; vit_b_16: its patch tokens before the last block) and
// alpha_k is the spatial mean of d logit_c / d A_k; scaled so its maximum is 1 (an all-zero map
// stays zero). `image` is one normalised input [3, S, S]; the network must be in eval mode. Each
// map is [h, w] float32 at the feature map's resolution (the caller resizes it onto the image).
// The weights receive no gradient: only the feature map is differentiated.
std::vector<at::Tensor> grad_cam(models::ClassifierImpl& network, const at::Tensor& image,
                                 const std::vector<std::int64_t>& classes);

}  // namespace petal::evaluate
