// petal's side of the training benchmarks (bench/train_throughput.py, bench/architecture_throughput.py):
// full-network training steps of a zoo model, either on one pre-loaded batch (compute only) or
// over an epoch of the augment stage's cache through BatchLoader (end to end), or eval-mode
// forward passes on one pre-loaded batch (forward). Prints one JSON line. A network with an
// auxiliary classifier (inception_v3) adds its loss x 0.4 in training steps, as the trainer does.
//
//   petal_bench_train --model resnet18 --mode compute|epoch|forward --size 128 --batch 32 --threads 2
//                     [--steps 20] [--warmup 3] [--data AUGMENT_OUT] [--workers 2] [--max-batches N]
//                     [--device cpu|cuda] [--channels-last 0|1] [--amp 0|1|fp16|bf16]  (1 = fp16)
#include <torch/nn/functional/loss.h>
#include <torch/optim/sgd.h>
#include <torch/torch.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <tuple>

#include "stages/train/allocator_tuning.h"
#include "stages/train/loader.h"
#include "stages/train/mixed_precision.h"
#include "stages/train/models/memory_format.h"
#include "stages/train/models/model_zoo.h"

namespace {

long status_kb(const char* key) {
  std::ifstream in("/proc/self/status");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(key, 0) == 0) return std::stol(line.substr(std::strlen(key) + 1));
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  petal::train::keep_freed_memory_for_reuse();  // as petal-worker does
  std::map<std::string, std::string> args = {{"model", "resnet18"}, {"mode", "compute"}, {"size", "128"},
                                             {"batch", "32"},       {"threads", "2"},     {"steps", "20"},
                                             {"warmup", "3"},       {"data", ""},         {"workers", "2"},
                                             {"max-batches", "0"},  {"classes", "5"},    {"device", "cpu"},
                                             {"channels-last", "0"}, {"amp", "0"}};
  for (int i = 1; i + 1 < argc; i += 2) args[std::string(argv[i]).substr(2)] = argv[i + 1];
  const int threads = std::stoi(args["threads"]);
  torch::set_num_threads(threads);
  torch::set_num_interop_threads(1);
  torch::manual_seed(0);

  petal::models::ModelSpec spec;
  spec.architecture = args["model"];
  spec.head.num_classes = std::stoll(args["classes"]);
  auto model = petal::models::make_classifier(spec);
  // --device cuda [--channels-last 1] [--amp fp16|bf16]: as the train stage does it (train_impl.cpp, trainer.cpp).
  const torch::Device device(args["device"] == "cuda" ? torch::kCUDA : torch::kCPU);
  const bool channels_last = args["channels-last"] == "1";
  const petal::train::Precision precision =
      petal::train::precision_on(args["amp"] == "0" ? "false" : args["amp"] == "1" ? "fp16" : args["amp"], device);
  const bool amp = precision != petal::train::Precision::Float32;
  const auto memory_format = channels_last ? torch::MemoryFormat::ChannelsLast : torch::MemoryFormat::Contiguous;
  model->to(device);
  if (channels_last) petal::models::use_channels_last(*model);
  model->train();
  torch::optim::SGD optimizer(model->parameters(), torch::optim::SGDOptions(0.01).momentum(0.9));
  std::vector<torch::Tensor> parameters = model->parameters();
  petal::train::LossScaler scaler(precision == petal::train::Precision::Float16);
  const auto step = [&](const torch::Tensor& cpu_images, const torch::Tensor& cpu_labels) {
    const torch::Tensor images = cpu_images.to(device, /*non_blocking=*/true).contiguous(memory_format);
    const torch::Tensor labels = cpu_labels.to(device);
    optimizer.zero_grad();
    torch::Tensor logits, auxiliary;
    {
      const petal::train::AutocastScope autocast(precision);
      std::tie(logits, auxiliary) = model->forward_with_auxiliary(images);
    }
    logits = logits.to(torch::kFloat32);
    if (auxiliary.defined()) auxiliary = auxiliary.to(torch::kFloat32);
    torch::Tensor loss = torch::nn::functional::cross_entropy(logits, labels);
    if (auxiliary.defined()) loss = loss + 0.4 * torch::nn::functional::cross_entropy(auxiliary, labels);
    scaler.scale(loss).backward();
    if (scaler.unscale(parameters)) optimizer.step();
    return loss.item<double>();
  };

  using Clock = std::chrono::steady_clock;
  std::int64_t images = 0;
  double seconds = 0, last_loss = 0;
  const std::int64_t batch = std::stoll(args["batch"]);
  if (args["mode"] == "forward") {
    const std::int64_t size = std::stoll(args["size"]);
    const torch::Tensor x = torch::randn({batch, 3, size, size}).to(device).contiguous(memory_format);
    model->eval();
    torch::NoGradGuard no_grad;
    for (int i = 0; i < std::stoi(args["warmup"]); ++i) model->forward(x);
    const auto start = Clock::now();
    for (int i = 0; i < std::stoi(args["steps"]); ++i) {
      last_loss = model->forward(x).sum().item<double>();
      images += batch;
    }
    seconds = std::chrono::duration<double>(Clock::now() - start).count();
  } else if (args["mode"] == "compute") {
    const std::int64_t size = std::stoll(args["size"]);
    const torch::Tensor x = torch::randn({batch, 3, size, size}).to(device).contiguous(memory_format);
    const torch::Tensor y = torch::randint(0, spec.head.num_classes, {batch}, torch::kLong).to(device);
    for (int i = 0; i < std::stoi(args["warmup"]); ++i) step(x, y);
    const auto start = Clock::now();
    for (int i = 0; i < std::stoi(args["steps"]); ++i) {
      last_loss = step(x, y);
      images += batch;
    }
    seconds = std::chrono::duration<double>(Clock::now() - start).count();
  } else {
    petal::LoaderOptions options;
    options.data_dir = args["data"];
    options.batch_size = batch;
    options.workers = std::stoi(args["workers"]);
    options.seed = 0;
    petal::BatchLoader loader(options);
    const std::int64_t max_batches = std::stoll(args["max-batches"]);
    const auto start = Clock::now();  // the epoch includes waiting for the loader's first batches
    loader.start_epoch(0);
    std::int64_t batches = 0;
    while (auto b = loader.next()) {
      last_loss = step(b->images, b->labels);
      images += b->images.size(0);
      if (max_batches > 0 && ++batches >= max_batches) break;
    }
    seconds = std::chrono::duration<double>(Clock::now() - start).count();
  }
  const nlohmann::json out = {{"side", "petal"},          {"model", args["model"]},
                              {"mode", args["mode"]},     {"images", images},
                              {"seconds", seconds},       {"images_per_second", images / seconds},
                              {"loss", last_loss},        {"hwm_kb", status_kb("VmHWM")},
                              {"threads", threads},       {"torch", TORCH_VERSION},
                              {"device", args["device"]}, {"channels_last", channels_last}, {"amp", amp},
                              {"precision", petal::train::describe(precision)}};
  std::printf("%s\n", out.dump().c_str());
  return 0;
}
