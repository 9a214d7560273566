#include "stages/evaluate/test_time_augmentation.h"

#include <torch/torch.h>

#include <stdexcept>

namespace petal::evaluate {

const std::vector<std::string>& tta_modes() {
  static const std::vector<std::string> modes = {"none", "flip"};
  return modes;
}

torch::Tensor class_probabilities(models::ClassifierImpl& network, const torch::Tensor& images, const std::string& mode) {
  const auto probabilities = [&](const torch::Tensor& x) {
    return torch::softmax(network.forward(x).to(torch::kFloat32), 1);
  };
  if (mode == "none") return probabilities(images);
  if (mode == "flip") return (probabilities(images) + probabilities(images.flip({3}))) / 2;
  throw std::invalid_argument("unknown test-time augmentation '" + mode + "' (known: none, flip)");
}

}  // namespace petal::evaluate
