// The replaceable classification head shared by every architecture (see classifier.h).
#include <torch/nn/modules/activation.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/dropout.h>
#include <torch/nn/modules/linear.h>

#include <stdexcept>
#include <string>
#include <utility>

#include "stages/train/models/classifier.h"

namespace petal::models {

namespace {

// AnyModule cannot hold a plain Sequential (its forward is a template); this one takes and returns
// a tensor. Children are still named "0", "1", ..., as in torch.nn.Sequential.
class HeadSequentialImpl : public torch::nn::SequentialImpl {
 public:
  torch::Tensor forward(torch::Tensor x) { return SequentialImpl::forward(std::move(x)); }
};

void validate(const HeadSpec& spec, std::int64_t in_features, const std::string& linear_layout) {
  if (linear_layout != "linear" && linear_layout != "dropout_linear") {
    throw std::invalid_argument("unknown linear head layout '" + linear_layout + "'");
  }
  if (in_features < 1) throw std::invalid_argument("the head needs at least one input feature");
  if (spec.num_classes < 1) throw std::invalid_argument("the head needs at least one class");
  for (const std::int64_t size : spec.hidden) {
    if (size < 1) throw std::invalid_argument("head hidden layer sizes must be positive, got " + std::to_string(size));
  }
  if (spec.dropout >= 1.0) throw std::invalid_argument("head dropout must be below 1, got " + std::to_string(spec.dropout));
}

}  // namespace

torch::nn::AnyModule make_head(const HeadSpec& spec, std::int64_t in_features, const std::string& linear_layout,
                               double default_dropout) {
  validate(spec, in_features, linear_layout);
  const double dropout = spec.dropout < 0 ? default_dropout : spec.dropout;

  if (spec.hidden.empty()) {
    // A bare Linear keeps the architecture's own key ("fc.weight") only while there is no dropout;
    // asking a "linear" architecture for dropout moves the Linear to index 1 ("fc.1.weight"), the
    // same shape as the "dropout_linear" layout. "dropout_linear" keeps its Dropout even at p = 0 so
    // that its keys ("classifier.1.weight") never depend on the rate.
    if (linear_layout == "linear" && dropout <= 0) return torch::nn::AnyModule(torch::nn::Linear(in_features, spec.num_classes));
    auto head = std::make_shared<HeadSequentialImpl>();
    head->push_back(torch::nn::Dropout(torch::nn::DropoutOptions(dropout > 0 ? dropout : 0.0)));
    head->push_back(torch::nn::Linear(in_features, spec.num_classes));
    return torch::nn::AnyModule(head);
  }

  // MLP: indices follow the order below, e.g. {512} with batch norm and dropout gives
  // 0 Linear, 1 BatchNorm1d, 2 ReLU, 3 Dropout, 4 Linear ("fc.0.weight", ..., "fc.4.weight").
  auto head = std::make_shared<HeadSequentialImpl>();
  std::int64_t width = in_features;
  for (const std::int64_t size : spec.hidden) {
    head->push_back(torch::nn::Linear(width, size));
    if (spec.batch_norm) head->push_back(torch::nn::BatchNorm1d(size));
    head->push_back(torch::nn::ReLU(torch::nn::ReLUOptions().inplace(true)));
    if (dropout > 0) head->push_back(torch::nn::Dropout(torch::nn::DropoutOptions(dropout)));
    width = size;
  }
  head->push_back(torch::nn::Linear(width, spec.num_classes));
  return torch::nn::AnyModule(head);
}

}  // namespace petal::models
