#include "stages/train/models/classifier.h"

#include <torch/torch.h>

#include "stages/train/models/weight_init.h"

namespace petal::models {

void init_conv_linear_normal(torch::nn::Module& module, double std) {
  torch::NoGradGuard no_grad;
  for (const auto& child : module.modules(/*include_self=*/false)) {
    if (auto* conv = child->as<torch::nn::Conv2d>()) {
      conv->weight.normal_(0.0, std).clamp_(-2.0, 2.0);
      if (conv->bias.defined()) conv->bias.zero_();
    } else if (auto* linear = child->as<torch::nn::Linear>()) {
      linear->weight.normal_(0.0, std).clamp_(-2.0, 2.0);
      if (linear->bias.defined()) linear->bias.zero_();
    }
  }
}

ClassifierImpl::CamGraph ClassifierImpl::cam_graph(const torch::Tensor& images) {
  torch::Tensor activations;
  {
    torch::NoGradGuard no_grad;
    activations = feature_map(images);
  }
  CamGraph graph;
  graph.map = activations.detach().requires_grad_(true);
  // A clone, because some architectures' embed() applies an in-place ReLU to its input (densenet),
  // which autograd forbids on a leaf; the gradient still reaches the map.
  torch::AutoGradMode enable(true);
  graph.logits = classify(embed(graph.map.clone()));
  return graph;
}

}  // namespace petal::models
