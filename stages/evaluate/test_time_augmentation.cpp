#include "stages/evaluate/test_time_augmentation.h"

#include <torch/torch.h>

#include <algorithm>
#include <stdexcept>
#include <utility>

namespace petal::evaluate {

namespace {

// The five crops of `images` [N, C, S, S] with side round(S * 7 / 8), each enlarged back to S.
std::vector<torch::Tensor> five_crops(const torch::Tensor& images) {
  const std::int64_t size = images.size(3);
  const std::int64_t side = std::max<std::int64_t>(1, (size * 7 + 4) / 8);
  const std::int64_t far = size - side;
  const std::int64_t centre = far / 2;
  namespace F = torch::nn::functional;
  const auto options = F::InterpolateFuncOptions()
                           .size(std::vector<std::int64_t>{size, size})
                           .mode(torch::kBilinear)
                           .align_corners(false);
  std::vector<torch::Tensor> crops;
  for (const auto& [top, left] : {std::pair{centre, centre}, std::pair{std::int64_t{0}, std::int64_t{0}},
                                  std::pair{std::int64_t{0}, far}, std::pair{far, std::int64_t{0}}, std::pair{far, far}}) {
    crops.push_back(F::interpolate(images.narrow(2, top, side).narrow(3, left, side), options));
  }
  return crops;
}

}  // namespace

torch::Tensor class_probabilities(models::ClassifierImpl& network, const torch::Tensor& images, const std::string& mode) {
  const auto probabilities = [&](const torch::Tensor& x) {
    return torch::softmax(network.forward(x).to(torch::kFloat32), 1);
  };
  if (mode == "none") return probabilities(images);
  if (mode == "flip") return (probabilities(images) + probabilities(images.flip({3}))) / 2;
  if (mode == "crops" || mode == "flip_crops") {
    const bool mirrored = mode == "flip_crops";
    torch::Tensor sum;
    int views = 0;
    for (const torch::Tensor& crop : five_crops(images)) {
      for (const torch::Tensor& view : mirrored ? std::vector<torch::Tensor>{crop, crop.flip({3})}
                                                : std::vector<torch::Tensor>{crop}) {
        const torch::Tensor p = probabilities(view);
        sum = sum.defined() ? sum + p : p;
        ++views;
      }
    }
    return sum / views;
  }
  throw std::invalid_argument("unknown test-time augmentation '" + mode + "' (known: none, flip, crops, flip_crops)");
}

}  // namespace petal::evaluate
