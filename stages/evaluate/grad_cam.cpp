#include "stages/evaluate/grad_cam.h"

#include <torch/torch.h>

namespace petal::evaluate {

std::vector<at::Tensor> grad_cam(models::ClassifierImpl& network, const at::Tensor& image,
                                 const std::vector<std::int64_t>& classes) {
  const models::ClassifierImpl::CamGraph graph = network.cam_graph(image.unsqueeze(0));
  const torch::Tensor& leaf = graph.map;
  const torch::Tensor& logits = graph.logits;
  std::vector<at::Tensor> maps;
  for (std::size_t i = 0; i < classes.size(); ++i) {
    const bool last = i + 1 == classes.size();
    const torch::Tensor gradient =
        torch::autograd::grad({logits[0][classes[i]]}, {leaf}, {}, /*retain_graph=*/!last)[0];
    torch::NoGradGuard no_grad;
    const torch::Tensor alpha = gradient.mean({2, 3}, /*keepdim=*/true);
    torch::Tensor map = torch::relu((alpha * leaf.detach()).sum(1))[0];
    const double peak = map.max().item<double>();
    if (peak > 0) map = map / peak;
    maps.push_back(map.contiguous());
  }
  return maps;
}

}  // namespace petal::evaluate
