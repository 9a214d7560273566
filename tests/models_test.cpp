// The model zoo: parity with the Python references (torchvision 0.14, efficientnet_lite_pytorch) on
// the same weights and input, and the invariants every architecture shares (blocks, heads).
// LibTorch's headers bring glog's CHECK macros: include them first, then let doctest's replace them.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/cuda.h>
#include <torch/nn/module.h>

#include "stages/train/model_names.h"
#include "stages/train/models/memory_format.h"
#include "stages/train/models/model_zoo.h"
#include "stages/train/weights/state_dict_file.h"
#include "stages/train/weights/state_dict_load.h"

#include "tests/support/torch_doctest.h"

#include <algorithm>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "tests/support/python_reference.h"
#include "tests/support/test_support.h"

using namespace petal;
using petal::test::TempDir;

namespace {

constexpr std::int64_t kClasses = 10;
constexpr double kTolerance = 1e-4;
// One step's gradients in float64, relative to their largest entry.
constexpr double kGradientTolerance = 1e-6;

models::HeadSpec linear_head() {
  models::HeadSpec head;
  head.num_classes = kClasses;
  return head;
}

at::Tensor entry(const weights::StateDict& state, const std::string& key) {
  for (const auto& [name, tensor] : state) {
    if (name == key) return tensor;
  }
  FAIL("io.pth has no '" << key << "'");
  return {};
}

double max_abs_diff(const at::Tensor& actual, const at::Tensor& expected) {
  REQUIRE(actual.sizes() == expected.sizes());
  return (actual - expected).abs().max().item<double>();
}

// One training step's gradients against make_reference.py's (--step): the same loss (plus 0.4 x
// an auxiliary classifier's, as the trainer adds it), in training mode (batch statistics, the
// auxiliary classifier) or in eval mode for networks whose training mode draws random numbers
// (stochastic depth), on the parameters the reference picked across the network; in float64.
void check_step_gradients(models::ClassifierImpl& model, const at::Tensor& input, const std::filesystem::path& file,
                          const std::string& mode) {
  const weights::StateDict expected = weights::read_state_dict(file);
  const at::Tensor labels = entry(expected, "labels");
  model.to(torch::kFloat64);  // as the reference: see make_reference.py's training_step_gradients
  model.train(mode == "train");
  model.zero_grad();
  torch::AutoGradMode enable(true);
  const auto [logits, auxiliary] = model.forward_with_auxiliary(input.to(torch::kFloat64));
  CHECK(auxiliary.defined() == (mode == "train" && model.architecture() == "inception_v3"));
  at::Tensor loss = at::cross_entropy_loss(logits, labels);
  if (auxiliary.defined()) loss = loss + 0.4 * at::cross_entropy_loss(auxiliary, labels);
  loss.backward();
  const auto parameters = model.named_parameters();
  int compared = 0;
  for (const auto& [key, gradient] : expected) {
    if (key.rfind("grad:", 0) != 0) continue;
    const std::string name = key.substr(5);
    CAPTURE(name);
    REQUIRE(parameters.find(name) != nullptr);
    const at::Tensor actual = parameters[name].grad();
    REQUIRE(actual.defined());
    const double scale = gradient.abs().max().item<double>();
    const double diff = max_abs_diff(actual, gradient);
    MESSAGE(model.architecture() << " " << mode << "-mode step, d loss / d " << name << ": max |diff| " << diff
                                 << " (gradient up to " << scale << ", relative " << diff / scale << ")");
    CHECK(scale > 0);
    CHECK(diff <= kGradientTolerance * scale);
    ++compared;
  }
  CHECK(compared >= 4);
}

// Builds `architecture` in Python from a fixed seed (BatchNorm statistics perturbed), loads its
// state dict strictly into petal's network and compares the eval outputs on the same input; with
// `step_mode` ("train" or "eval") also one training step's gradients.
void check_parity(const std::string& architecture, int size, const std::string& step_mode = "") {
  TempDir dir;
  std::vector<std::string> arguments = {"--arch", architecture, "--num-classes", std::to_string(kClasses),
                                        "--size", std::to_string(size), "--batch", "2", "--out", dir.path().string()};
  if (!step_mode.empty()) arguments.insert(arguments.end(), {"--step", step_mode});
  test::run_python_reference("make_reference.py", arguments);
  at::set_num_threads(test::reference_threads());
  models::Classifier model = models::make_classifier({architecture, linear_head()});
  const weights::LoadReport report =
      weights::load_state_dict(*model, weights::read_state_dict(dir / "weights.pth"), {}, "weights.pth");
  CHECK_MESSAGE(report.ok(), report.describe());
  // Every parameter and buffer came from the file: nothing was left at petal's own init.
  CHECK(report.loaded.size() == weights::module_state_dict(*model).size());

  const weights::StateDict io = weights::read_state_dict(dir / "io.pth");
  const at::Tensor input = entry(io, "input");
  model->eval();
  torch::NoGradGuard no_grad;
  const double output_diff = max_abs_diff(model->forward(input), entry(io, "output"));
  const double features_diff = max_abs_diff(model->features(input), entry(io, "features"));
  // 1e-4 absolute for outputs of order one; relative to the magnitude beyond (float32 sums over
  // millions of terms differ in their last bits with the reduction order, which oneDNN may change
  // with the thread count and the machine's load).
  const double output_scale = std::max(1.0, entry(io, "output").abs().max().item<double>());
  const double features_scale = std::max(1.0, entry(io, "features").abs().max().item<double>());
  MESSAGE(architecture << " at " << size << " px (" << at::get_num_threads() << " threads): max |output diff| " << output_diff << " (outputs up to "
                       << output_scale << "), max |features diff| " << features_diff << " (features up to "
                       << features_scale << ")");
  CHECK(output_diff <= kTolerance * output_scale);
  CHECK(features_diff <= kTolerance * features_scale);
  // The comparison must not be blind: the two samples' outputs differ far beyond the tolerance.
  const at::Tensor output = entry(io, "output");
  const double spread = (output[0] - output[1]).abs().max().item<double>();
  MESSAGE(architecture << ": the two samples' outputs differ by up to " << spread);
  CHECK(spread > 100 * kTolerance * output_scale);
  if (!step_mode.empty()) check_step_gradients(*model, input, dir / "grads.pth", step_mode);
}

// The smallest size from `wanted` up that `architecture` takes (maxvit_t: 224; inception_v3: 75,
// or 299 while its auxiliary classifier trains).
int size_for(const std::string& architecture, int wanted, bool training) {
  int size = wanted;
  while (!image_size_problem(architecture, size, training).empty()) ++size;
  return size;
}

bool starts_with_prefix(const std::string& name, const std::string& prefix) {
  if (name == prefix) return true;  // a block that is one parameter (vit_b_16's "class_token")
  return name.size() > prefix.size() && name.compare(0, prefix.size(), prefix) == 0 && name[prefix.size()] == '.';
}

std::vector<std::string> parameter_and_buffer_names(const torch::nn::Module& module) {
  std::vector<std::string> names;
  for (const auto& item : module.named_parameters()) names.push_back(item.key());
  for (const auto& item : module.named_buffers()) names.push_back(item.key());
  return names;
}

bool has_parameter(const torch::nn::Module& module, const std::string& name) {
  return module.named_parameters().find(name) != nullptr;
}

}  // namespace

// ---- parity with the Python references (64 px: every architecture's pools still leave >= 1 px) ----

TEST_CASE("model parity: resnet18") { check_parity("resnet18", 64); }
TEST_CASE("model parity: resnet50") { check_parity("resnet50", 64); }
// The reference state dict is ~550 MB (the fully connected layers), written and read once.
TEST_CASE("model parity: vgg16_bn") { check_parity("vgg16_bn", 64); }
TEST_CASE("model parity: densenet121") { check_parity("densenet121", 64); }
TEST_CASE("model parity: mobilenet_v2") { check_parity("mobilenet_v2", 64); }
TEST_CASE("model parity: efficientnet_b0") { check_parity("efficientnet_b0", 64); }
TEST_CASE("model parity: efficientnet_lite0") { check_parity("efficientnet_lite0", 64); }
// Lite1 and Lite2 pad as the package does for their own 240 and 260 px (odd maps: symmetric
// stride-2 padding), which 64 px inputs exercise as well as the native sizes: the padding is a
// constant of each layer.
TEST_CASE("model parity: efficientnet_lite1") { check_parity("efficientnet_lite1", 64); }
TEST_CASE("model parity: efficientnet_lite2") { check_parity("efficientnet_lite2", 64); }
TEST_CASE("model parity: small_cnn") { check_parity("small_cnn", 64); }
TEST_CASE("model parity: convnext_tiny, and one step's gradients") { check_parity("convnext_tiny", 64, "eval"); }
// 64 px: 4 x 4 patches, the position embedding resized from its 14 x 14 grid (torchvision's
// interpolate_embeddings on the Python side; the step's gradients reach the stored 14 x 14
// embedding through the resize on petal's side, so it is not among the compared parameters).
// 224 px: the stored grid.
TEST_CASE("model parity: vit_b_16 at 64 px, and one training step's gradients") { check_parity("vit_b_16", 64, "train"); }
TEST_CASE("model parity: vit_b_16 at 224 px") { check_parity("vit_b_16", 224); }
// Every stage's map must split into 7 x 7 windows: 224 px.
TEST_CASE("model parity: maxvit_t, and one step's gradients") { check_parity("maxvit_t", 224, "eval"); }
// 299 px, the native size: the training step runs the auxiliary classifier (it needs Mixed_6e at 17 x 17).
TEST_CASE("model parity: inception_v3, and one training step's gradients with the auxiliary classifier") {
  check_parity("inception_v3", 299, "train");
}

// ---- invariants of every architecture ----

TEST_CASE("model zoo: blocks cover every parameter") {
  for (const std::string& architecture : architecture_names()) {
    CAPTURE(architecture);
    const models::Classifier model = models::make_classifier({architecture, linear_head()});
    CHECK(model->architecture() == architecture);
    std::vector<std::string> prefixes = model->blocks();
    REQUIRE(!prefixes.empty());
    prefixes.push_back(model->head_prefix());
    std::map<std::string, int> used;
    for (const std::string& name : parameter_and_buffer_names(*model)) {
      CAPTURE(name);
      int owners = 0;
      for (const std::string& prefix : prefixes) {
        if (starts_with_prefix(name, prefix)) {
          ++owners;
          ++used[prefix];
        }
      }
      CHECK(owners == 1);
    }
    // No block is empty (a misspelt prefix would own nothing).
    for (const std::string& prefix : prefixes) {
      CAPTURE(prefix);
      CHECK(used[prefix] > 0);
    }
  }
}

TEST_CASE("model zoo: shapes of feature_map, features and output") {
  for (const std::string& architecture : architecture_names()) {
    CAPTURE(architecture);
    const int size = size_for(architecture, 64, false);
    const at::Tensor images = at::randn({2, 3, size, size});
    const models::Classifier model = models::make_classifier({architecture, linear_head()});
    model->eval();
    torch::NoGradGuard no_grad;
    const at::Tensor map = model->feature_map(images);
    REQUIRE(map.dim() == 4);
    CHECK(map.size(0) == 2);
    const at::Tensor features = model->embed(map);
    CHECK((features.sizes() == at::IntArrayRef({2, model->feature_dim()})));
    CHECK((model->classify(features).sizes() == at::IntArrayRef({2, kClasses})));
  }
}

// In-place ReLUs and residual adds must leave autograd intact: a training step reaches every
// parameter. vgg16_bn is left out for time (its 120 M fully connected weights); it shares the
// Conv-BN-ReLU(in place) pattern with small_cnn. 32 px keeps it quick and still leaves every
// network at least 1 px after its last pool (maxvit_t takes 224, inception_v3 299 for its
// auxiliary classifier, whose loss reaches AuxLogits).
TEST_CASE("model zoo: a training step reaches every parameter") {
  const at::Tensor labels = at::tensor({1, 7}, at::kLong);
  for (const std::string& architecture : architecture_names()) {
    if (architecture == "vgg16_bn") continue;
    CAPTURE(architecture);
    const int size = size_for(architecture, 32, true);
    const at::Tensor images = at::randn({2, 3, size, size});
    const models::Classifier model = models::make_classifier({architecture, linear_head()});
    model->train();
    const auto [logits, auxiliary] = model->forward_with_auxiliary(images);
    at::Tensor loss = at::cross_entropy_loss(logits, labels);
    if (auxiliary.defined()) loss = loss + at::cross_entropy_loss(auxiliary, labels);
    loss.backward();
    for (const auto& item : model->named_parameters()) {
      CAPTURE(item.key());
      REQUIRE(item.value().grad().defined());
      CHECK(item.value().grad().isfinite().all().item<bool>());
    }
  }
}

// One training step (training mode, cross-entropy) of a network seeded with 11 on `device`: the
// loss, and every parameter's gradient flattened and joined, back on the CPU.
struct TrainingStep {
  double loss = 0;
  at::Tensor gradient;
};
TrainingStep training_step(const std::string& architecture, const at::Tensor& images, const at::Tensor& labels,
                           torch::Device device, bool channels_last) {
  torch::manual_seed(11);  // the same weights, and the same stochastic-depth draws on one device
  const models::Classifier model = models::make_classifier({architecture, linear_head()});
  model->to(device);
  model->train();
  if (channels_last) models::use_channels_last(*model);
  at::Tensor input = images.to(device);
  if (channels_last) input = input.contiguous(at::MemoryFormat::ChannelsLast);
  const at::Tensor loss = at::cross_entropy_loss(model->forward_with_auxiliary(input).first, labels.to(device));
  loss.backward();
  std::vector<at::Tensor> parts;
  for (const auto& parameter : model->parameters()) parts.push_back(parameter.grad().flatten().cpu());
  return {loss.item<double>(), at::cat(parts)};
}

// How far `step`'s gradients are from `reference`'s, relative to the reference's size: all
// gradients together, since per tensor rounding can dominate where the exact gradient is ~0 (a
// BatchNorm bias followed by another BatchNorm in training mode). A layout or kernel mistake gives
// distances of order 1.
double gradient_distance(const TrainingStep& step, const TrainingStep& reference) {
  return (step.gradient - reference.gradient).norm().item<double>() / reference.gradient.norm().item<double>();
}

// channels_last = "auto" trains these in channels-last order on the CPU (memory_format.h). One
// training step must compute what the contiguous network computes, up to float32 rounding. Rounding
// alone measured 4e-5 (efficientnet_b0) to 4.2e-2 (resnet50) here: oneDNN's channels-last kernels
// round differently, and with random weights and batch 8 the BatchNorm backward passes amplify it.
// PyTorch 1.13 shows the same with torchvision's mobilenet_v2 in Python: float32 gradients 8.1e-3
// from float64's when contiguous, 2.4e-2 when channels-last.
TEST_CASE("model zoo: a channels-last training step gives the contiguous step's loss and gradients") {
  const at::Tensor labels = at::tensor({1, 7, 3, 0, 2, 9, 4, 4}, at::kLong);
  torch::manual_seed(3);
  const at::Tensor images = at::randn({8, 3, 128, 128});
  for (const std::string& architecture : architecture_names()) {
    if (!models::channels_last_by_default(architecture, /*cuda=*/false)) continue;
    CAPTURE(architecture);
    const TrainingStep contiguous = training_step(architecture, images, labels, torch::kCPU, false);
    const TrainingStep nhwc = training_step(architecture, images, labels, torch::kCPU, true);
    const double distance = gradient_distance(nhwc, contiguous);
    MESSAGE(architecture << ": loss contiguous " << contiguous.loss << ", channels-last " << nhwc.loss
                         << "; gradients' relative distance " << distance);
    CHECK(nhwc.loss == doctest::Approx(contiguous.loss).epsilon(1e-4));
    CHECK(distance < 0.1);
  }
}

// The same step on CUDA, contiguous and channels-last, against the CPU's; where LibTorch has no
// usable device (CI) it says so and passes. Architectures with random layers in training
// (stochastic depth) are left out: CUDA draws from another generator.
TEST_CASE("model zoo on CUDA: a training step gives the CPU step's loss and gradients") {
  if (!torch::cuda::is_available()) {
    MESSAGE("no usable CUDA device in this LibTorch build: the CUDA step checks did not run");
    return;
  }
  MESSAGE("cuDNN convolutions in TF32: " << at::globalContext().allowTF32CuDNN() << " (LibTorch's default)");
  const at::Tensor labels = at::tensor({1, 7, 3, 0, 2, 9, 4, 4}, at::kLong);
  torch::manual_seed(3);
  const at::Tensor images = at::randn({8, 3, 128, 128});
  for (const std::string architecture : {"small_cnn", "resnet18", "resnet50", "mobilenet_v2", "densenet121", "vgg16_bn"}) {
    CAPTURE(architecture);
    const TrainingStep cpu = training_step(architecture, images, labels, torch::kCPU, false);
    for (const bool channels_last : {false, true}) {
      CAPTURE(channels_last);
      const TrainingStep cuda = training_step(architecture, images, labels, torch::kCUDA, channels_last);
      const double distance = gradient_distance(cuda, cpu);
      MESSAGE(architecture << (channels_last ? " channels-last" : "") << ": loss CPU " << cpu.loss << ", CUDA "
                           << cuda.loss << "; gradients' relative distance " << distance);
      CHECK(cuda.loss == doctest::Approx(cpu.loss).epsilon(1e-4));
      CHECK(distance < 0.1);
    }
  }
}

TEST_CASE("model zoo: MLP head") {
  models::HeadSpec head = linear_head();
  head.hidden = {512};
  head.batch_norm = true;
  head.dropout = 0.3;
  const models::Classifier model = models::make_classifier({"resnet18", head});
  // Sequential(0 Linear, 1 BatchNorm1d, 2 ReLU, 3 Dropout, 4 Linear) under the architecture's head name.
  const auto parameters = model->named_parameters();
  REQUIRE(parameters.find("fc.0.weight") != nullptr);
  CHECK((parameters["fc.0.weight"].sizes() == at::IntArrayRef({512, 512})));
  CHECK((parameters["fc.1.weight"].sizes() == at::IntArrayRef({512})));
  CHECK(model->named_buffers().find("fc.1.running_mean") != nullptr);
  CHECK((parameters["fc.4.weight"].sizes() == at::IntArrayRef({kClasses, 512})));
  CHECK(parameters.find("fc.weight") == nullptr);

  // Without batch norm or dropout: Linear, ReLU, Linear.
  models::HeadSpec plain_head = head;
  plain_head.batch_norm = false;
  plain_head.dropout = 0.0;
  const models::Classifier plain = models::make_classifier({"densenet121", plain_head});
  CHECK(has_parameter(*plain, "classifier.0.weight"));
  CHECK(has_parameter(*plain, "classifier.2.weight"));
  CHECK(!has_parameter(*plain, "classifier.1.weight"));

  const at::Tensor images = at::randn({4, 3, 64, 64});
  model->train();
  CHECK((model->forward(images).sizes() == at::IntArrayRef({4, kClasses})));
  model->eval();
  torch::NoGradGuard no_grad;
  // Eval mode is deterministic (no dropout, running BatchNorm statistics), batch of one included.
  CHECK(at::equal(model->forward(images), model->forward(images)));
  CHECK((model->forward(images.slice(0, 0, 1)).sizes() == at::IntArrayRef({1, kClasses})));
}

TEST_CASE("model zoo: linear head names") {
  models::HeadSpec head = linear_head();
  CHECK(has_parameter(*models::make_classifier({"resnet18", head}), "fc.weight"));
  CHECK(has_parameter(*models::make_classifier({"small_cnn", head}), "classifier.1.weight"));
  // The head replaces only classifier.6; classifier.0 and .3 stay VGG's own fully connected layers.
  const models::Classifier vgg = models::make_classifier({"vgg16_bn", head});
  CHECK((vgg->named_parameters()["classifier.6.weight"].sizes() == at::IntArrayRef({kClasses, 4096})));
  CHECK(has_parameter(*vgg, "classifier.3.weight"));
  // Dropout asked of a bare-Linear architecture puts the Linear at index 1.
  head.dropout = 0.5;
  CHECK(has_parameter(*models::make_classifier({"resnet18", head}), "fc.1.weight"));
}

TEST_CASE("model zoo: unknown architecture") {
  CHECK_THROWS_WITH_AS(models::make_classifier({"resnet19", linear_head()}),
                       ("unknown architecture 'resnet19' (known: " + architecture_list() + ")").c_str(),
                       std::invalid_argument);
  models::HeadSpec head = linear_head();
  head.num_classes = 0;
  CHECK_THROWS_WITH_AS(models::make_classifier({"resnet18", head}), "the head needs at least one class",
                       std::invalid_argument);
  head = linear_head();
  head.hidden = {0};
  CHECK_THROWS_WITH_AS(models::make_classifier({"resnet18", head}), "head hidden layer sizes must be positive, got 0",
                       std::invalid_argument);
}
