#pragma once
// Weight initialisations that several torchvision architectures share.
#include <torch/nn/module.h>

namespace petal::models {

// ConvNeXt's and MaxViT's: every Conv2d and Linear weight normal(0, std) cut at +-2 (torchvision's
// trunc_normal_ bounds; at std 0.02 a plain normal), every such bias zero. Norm layers keep their
// ones / zeros.
void init_conv_linear_normal(torch::nn::Module& module, double std);

}  // namespace petal::models
