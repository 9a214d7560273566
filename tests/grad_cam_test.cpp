// Grad-CAM (stages/evaluate/grad_cam.*) over every architecture's cam_graph: the default (last
// convolutional map) and vit_b_16's patch grid before its last encoder block.
// LibTorch's headers bring glog's CHECK macros: include them first, then let doctest's replace them.
#include <ATen/ATen.h>
#include <torch/torch.h>

#include "stages/evaluate/grad_cam.h"
#include "stages/train/model_names.h"
#include "stages/train/models/model_zoo.h"

#include "tests/support/torch_doctest.h"

#include <string>

using namespace petal;

namespace {

models::Classifier eval_model(const std::string& architecture) {
  torch::manual_seed(3);
  models::HeadSpec head;
  head.num_classes = 4;
  models::Classifier model = models::make_classifier({architecture, head});
  model->eval();
  return model;
}

}  // namespace

TEST_CASE("grad-cam: the graph computes the network's own logits, for every architecture") {
  for (const std::string& architecture : architecture_names()) {
    if (architecture == "vgg16_bn") continue;  // time: its 120 M fully connected weights
    CAPTURE(architecture);
    int size = 64;
    while (!image_size_problem(architecture, size, false).empty()) ++size;
    const models::Classifier model = eval_model(architecture);
    const at::Tensor image = at::randn({1, 3, size, size});
    const models::ClassifierImpl::CamGraph graph = model->cam_graph(image);
    CHECK(graph.map.dim() == 4);
    CHECK(graph.map.requires_grad());
    torch::NoGradGuard no_grad;
    CHECK((graph.logits.detach() - model->forward(image)).abs().max().item<double>() < 1e-4);
  }
}

TEST_CASE("grad-cam: resnet18's maps equal Grad-CAM computed through the whole network") {
  const models::Classifier model = eval_model("resnet18");
  const at::Tensor image = at::randn({3, 64, 64});
  const std::vector<at::Tensor> maps = evaluate::grad_cam(*model, image, {0, 2});
  REQUIRE(maps.size() == 2);
  for (std::size_t i = 0; i < maps.size(); ++i) {
    // Independently: the feature map as an inner node of one autograd graph from the image.
    const at::Tensor activations = model->feature_map(image.unsqueeze(0));
    const at::Tensor logits = model->classify(model->embed(activations));
    const std::int64_t label = i == 0 ? 0 : 2;
    const at::Tensor gradient = torch::autograd::grad({logits[0][label]}, {activations})[0];
    at::Tensor expected = at::relu((gradient.mean({2, 3}, true) * activations.detach()).sum(1))[0];
    if (expected.max().item<double>() > 0) expected = expected / expected.max();
    CHECK((maps[i].sizes() == at::IntArrayRef({2, 2})));
    CHECK((maps[i] - expected).abs().max().item<double>() < 1e-5);
  }
}

TEST_CASE("grad-cam: vit_b_16 gives one value per patch, scaled to a maximum of 1, that depends on the class") {
  const models::Classifier model = eval_model("vit_b_16");
  const at::Tensor image = at::randn({3, 64, 64});  // 4 x 4 patches
  const std::vector<at::Tensor> maps = evaluate::grad_cam(*model, image, {0, 1});
  REQUIRE(maps.size() == 2);
  for (const at::Tensor& map : maps) {
    CHECK((map.sizes() == at::IntArrayRef({4, 4})));
    CHECK(map.min().item<double>() >= 0);
    CHECK(map.max().item<double>() == doctest::Approx(1.0));
  }
  CHECK((maps[0] - maps[1]).abs().max().item<double>() > 1e-3);
}
