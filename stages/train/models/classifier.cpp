#include "stages/train/models/classifier.h"

#include <torch/torch.h>

namespace petal::models {

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
