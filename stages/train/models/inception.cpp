// Inception v3 as torchvision 0.14 builds it (torchvision/models/inception.py, aux_logits=True,
// transform_input=False): the same modules under the same names, so its state dicts load unchanged.
//   Conv2d_1a_3x3 ... Conv2d_4a_3x3   the stem (BasicConv2d: conv without bias, BatchNorm eps 1e-3, ReLU)
//   Mixed_5b..5d, 6a..6e, 7a..7c      InceptionA x3, B, C x4, D, E x2
//   AuxLogits                         the auxiliary classifier on Mixed_6e's output: used while it
//                                     trains (its loss is added with a weight, see the trainer),
//                                     dropped in eval; "AuxLogits.fc" is replaced for N classes
//   fc                                the head (default: Dropout(0.5), Linear(2048, N))
// torchvision's ImageNet weights expect inputs normalised with mean = std = 0.5 (its
// transform_input converts ImageNet-normalised ones); petal normalises so directly ("inception").
// 299 px is the native size. Eval works from 75 px; the auxiliary classifier needs 299 px.
#include <torch/nn/functional/pooling.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>
#include <torch/torch.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "stages/train/models/classifier.h"
#include "stages/train/models/model_zoo.h"

namespace petal::models {

namespace {

namespace nn = torch::nn;
namespace F = torch::nn::functional;

constexpr std::int64_t kFeatureDim = 2048;
constexpr std::int64_t kAuxMinimumMap = 17;  // Mixed_6e's side at 299 px; the aux head's 5x5 conv needs it

struct Kernel {
  std::int64_t h, w;
};

class BasicConv2dImpl : public nn::Module {
 public:
  BasicConv2dImpl(std::int64_t in, std::int64_t out, Kernel kernel, std::int64_t stride = 1, Kernel padding = {0, 0},
                  double init_std = 0.1)
      : conv_(register_module("conv", nn::Conv2d(nn::Conv2dOptions(in, out, {kernel.h, kernel.w})
                                                     .stride(stride)
                                                     .padding({padding.h, padding.w})
                                                     .bias(false)))),
        bn_(register_module("bn", nn::BatchNorm2d(nn::BatchNormOptions(out).eps(1e-3)))) {
    torch::NoGradGuard no_grad;
    conv_->weight.normal_(0.0, init_std).clamp_(-2.0, 2.0);  // torchvision: truncated normal cut at +-2
  }
  torch::Tensor forward(const torch::Tensor& x) { return bn_(conv_(x)).relu_(); }

 private:
  nn::Conv2d conv_;
  nn::BatchNorm2d bn_;
};
TORCH_MODULE(BasicConv2d);

BasicConv2d square(std::int64_t in, std::int64_t out, std::int64_t k, std::int64_t stride = 1, std::int64_t pad = 0) {
  return BasicConv2d(in, out, Kernel{k, k}, stride, Kernel{pad, pad});
}
BasicConv2d row(std::int64_t in, std::int64_t out, std::int64_t k) {  // 1 x k
  return BasicConv2d(in, out, Kernel{1, k}, 1, Kernel{0, k / 2});
}
BasicConv2d column(std::int64_t in, std::int64_t out, std::int64_t k) {  // k x 1
  return BasicConv2d(in, out, Kernel{k, 1}, 1, Kernel{k / 2, 0});
}

torch::Tensor pool3x3_same(const torch::Tensor& x) {
  return F::avg_pool2d(x, F::AvgPool2dFuncOptions(3).stride(1).padding(1));
}
torch::Tensor max_pool3x3_stride2(const torch::Tensor& x) {
  return F::max_pool2d(x, F::MaxPool2dFuncOptions(3).stride(2));
}

// A block's branches, each a chain of convolutions registered under torchvision's names.
class MixedImpl : public nn::Module {
 protected:
  BasicConv2d add(const std::string& name, BasicConv2d conv) { return register_module(name, std::move(conv)); }
};

class InceptionAImpl : public MixedImpl {
 public:
  InceptionAImpl(std::int64_t in, std::int64_t pool_features)
      : b1x1_(add("branch1x1", square(in, 64, 1))),
        b5x5_1_(add("branch5x5_1", square(in, 48, 1))),
        b5x5_2_(add("branch5x5_2", square(48, 64, 5, 1, 2))),
        b3x3dbl_1_(add("branch3x3dbl_1", square(in, 64, 1))),
        b3x3dbl_2_(add("branch3x3dbl_2", square(64, 96, 3, 1, 1))),
        b3x3dbl_3_(add("branch3x3dbl_3", square(96, 96, 3, 1, 1))),
        pool_(add("branch_pool", square(in, pool_features, 1))) {}
  torch::Tensor forward(const torch::Tensor& x) {
    return torch::cat({b1x1_(x), b5x5_2_(b5x5_1_(x)), b3x3dbl_3_(b3x3dbl_2_(b3x3dbl_1_(x))), pool_(pool3x3_same(x))}, 1);
  }

 private:
  BasicConv2d b1x1_, b5x5_1_, b5x5_2_, b3x3dbl_1_, b3x3dbl_2_, b3x3dbl_3_, pool_;
};
TORCH_MODULE(InceptionA);

class InceptionBImpl : public MixedImpl {
 public:
  explicit InceptionBImpl(std::int64_t in)
      : b3x3_(add("branch3x3", square(in, 384, 3, 2))),
        b3x3dbl_1_(add("branch3x3dbl_1", square(in, 64, 1))),
        b3x3dbl_2_(add("branch3x3dbl_2", square(64, 96, 3, 1, 1))),
        b3x3dbl_3_(add("branch3x3dbl_3", square(96, 96, 3, 2))) {}
  torch::Tensor forward(const torch::Tensor& x) {
    return torch::cat({b3x3_(x), b3x3dbl_3_(b3x3dbl_2_(b3x3dbl_1_(x))), max_pool3x3_stride2(x)}, 1);
  }

 private:
  BasicConv2d b3x3_, b3x3dbl_1_, b3x3dbl_2_, b3x3dbl_3_;
};
TORCH_MODULE(InceptionB);

class InceptionCImpl : public MixedImpl {
 public:
  InceptionCImpl(std::int64_t in, std::int64_t c7)
      : b1x1_(add("branch1x1", square(in, 192, 1))),
        b7x7_1_(add("branch7x7_1", square(in, c7, 1))),
        b7x7_2_(add("branch7x7_2", row(c7, c7, 7))),
        b7x7_3_(add("branch7x7_3", column(c7, 192, 7))),
        dbl_1_(add("branch7x7dbl_1", square(in, c7, 1))),
        dbl_2_(add("branch7x7dbl_2", column(c7, c7, 7))),
        dbl_3_(add("branch7x7dbl_3", row(c7, c7, 7))),
        dbl_4_(add("branch7x7dbl_4", column(c7, c7, 7))),
        dbl_5_(add("branch7x7dbl_5", row(c7, 192, 7))),
        pool_(add("branch_pool", square(in, 192, 1))) {}
  torch::Tensor forward(const torch::Tensor& x) {
    return torch::cat({b1x1_(x), b7x7_3_(b7x7_2_(b7x7_1_(x))), dbl_5_(dbl_4_(dbl_3_(dbl_2_(dbl_1_(x))))),
                       pool_(pool3x3_same(x))},
                      1);
  }

 private:
  BasicConv2d b1x1_, b7x7_1_, b7x7_2_, b7x7_3_, dbl_1_, dbl_2_, dbl_3_, dbl_4_, dbl_5_, pool_;
};
TORCH_MODULE(InceptionC);

class InceptionDImpl : public MixedImpl {
 public:
  explicit InceptionDImpl(std::int64_t in)
      : b3x3_1_(add("branch3x3_1", square(in, 192, 1))),
        b3x3_2_(add("branch3x3_2", square(192, 320, 3, 2))),
        b7x7x3_1_(add("branch7x7x3_1", square(in, 192, 1))),
        b7x7x3_2_(add("branch7x7x3_2", row(192, 192, 7))),
        b7x7x3_3_(add("branch7x7x3_3", column(192, 192, 7))),
        b7x7x3_4_(add("branch7x7x3_4", square(192, 192, 3, 2))) {}
  torch::Tensor forward(const torch::Tensor& x) {
    return torch::cat({b3x3_2_(b3x3_1_(x)), b7x7x3_4_(b7x7x3_3_(b7x7x3_2_(b7x7x3_1_(x)))), max_pool3x3_stride2(x)}, 1);
  }

 private:
  BasicConv2d b3x3_1_, b3x3_2_, b7x7x3_1_, b7x7x3_2_, b7x7x3_3_, b7x7x3_4_;
};
TORCH_MODULE(InceptionD);

class InceptionEImpl : public MixedImpl {
 public:
  explicit InceptionEImpl(std::int64_t in)
      : b1x1_(add("branch1x1", square(in, 320, 1))),
        b3x3_1_(add("branch3x3_1", square(in, 384, 1))),
        b3x3_2a_(add("branch3x3_2a", row(384, 384, 3))),
        b3x3_2b_(add("branch3x3_2b", column(384, 384, 3))),
        dbl_1_(add("branch3x3dbl_1", square(in, 448, 1))),
        dbl_2_(add("branch3x3dbl_2", square(448, 384, 3, 1, 1))),
        dbl_3a_(add("branch3x3dbl_3a", row(384, 384, 3))),
        dbl_3b_(add("branch3x3dbl_3b", column(384, 384, 3))),
        pool_(add("branch_pool", square(in, 192, 1))) {}
  torch::Tensor forward(const torch::Tensor& x) {
    const torch::Tensor b3 = b3x3_1_(x);
    const torch::Tensor d = dbl_2_(dbl_1_(x));
    return torch::cat({b1x1_(x), b3x3_2a_(b3), b3x3_2b_(b3), dbl_3a_(d), dbl_3b_(d), pool_(pool3x3_same(x))}, 1);
  }

 private:
  BasicConv2d b1x1_, b3x3_1_, b3x3_2a_, b3x3_2b_, dbl_1_, dbl_2_, dbl_3a_, dbl_3b_, pool_;
};
TORCH_MODULE(InceptionE);

class InceptionAuxImpl : public nn::Module {
 public:
  InceptionAuxImpl(std::int64_t in, std::int64_t num_classes)
      : conv0_(register_module("conv0", square(in, 128, 1))),
        conv1_(register_module("conv1", BasicConv2d(128, 768, Kernel{5, 5}, 1, Kernel{0, 0}, 0.01))),
        fc_(register_module("fc", nn::Linear(768, num_classes))) {
    torch::NoGradGuard no_grad;
    fc_->weight.normal_(0.0, 0.001);
  }
  torch::Tensor forward(const torch::Tensor& x) {
    torch::Tensor y = conv1_(conv0_(F::avg_pool2d(x, F::AvgPool2dFuncOptions(5).stride(3))));
    return fc_(torch::flatten(F::adaptive_avg_pool2d(y, F::AdaptiveAvgPool2dFuncOptions(1)), 1));
  }

 private:
  BasicConv2d conv0_, conv1_;
  nn::Linear fc_;
};
TORCH_MODULE(InceptionAux);

class InceptionV3Impl : public ClassifierImpl {
 public:
  explicit InceptionV3Impl(const HeadSpec& head) {
    const auto stem = [this](const std::string& name, BasicConv2d conv) {
      stem_.push_back(register_module(name, std::move(conv)));
      blocks_.push_back(name);
    };
    const auto mixed = [this](const std::string& name, auto block) {
      mixed_.emplace_back(register_module(name, std::move(block)));
      blocks_.push_back(name);
    };
    stem("Conv2d_1a_3x3", square(3, 32, 3, 2));
    stem("Conv2d_2a_3x3", square(32, 32, 3));
    stem("Conv2d_2b_3x3", square(32, 64, 3, 1, 1));
    stem("Conv2d_3b_1x1", square(64, 80, 1));
    stem("Conv2d_4a_3x3", square(80, 192, 3));
    mixed("Mixed_5b", InceptionA(192, 32));
    mixed("Mixed_5c", InceptionA(256, 64));
    mixed("Mixed_5d", InceptionA(288, 64));
    mixed("Mixed_6a", InceptionB(288));
    mixed("Mixed_6b", InceptionC(768, 128));
    mixed("Mixed_6c", InceptionC(768, 160));
    mixed("Mixed_6d", InceptionC(768, 160));
    mixed("Mixed_6e", InceptionC(768, 192));
    aux_ = register_module("AuxLogits", InceptionAux(768, head.num_classes));
    blocks_.push_back("AuxLogits");
    mixed("Mixed_7a", InceptionD(768));
    mixed("Mixed_7b", InceptionE(1280));
    mixed("Mixed_7c", InceptionE(2048));
    head_ = make_head(head, kFeatureDim, "linear", 0.5);
    register_module("fc", head_.ptr());
  }

  torch::Tensor feature_map(const torch::Tensor& images) override { return run(images, nullptr); }
  torch::Tensor embed(const torch::Tensor& feature_map) override {
    return torch::flatten(F::adaptive_avg_pool2d(feature_map, F::AdaptiveAvgPool2dFuncOptions(1)), 1);
  }
  torch::Tensor classify(const torch::Tensor& features) override { return head_.forward(features); }

  std::pair<torch::Tensor, torch::Tensor> forward_with_auxiliary(const torch::Tensor& images) override {
    torch::Tensor auxiliary;
    const torch::Tensor logits = classify(embed(run(images, &auxiliary)));
    return {logits, auxiliary};
  }

  std::vector<std::string> blocks() const override { return blocks_; }
  std::string head_prefix() const override { return "fc"; }
  std::vector<std::string> replaced_prefixes() const override { return {"fc", "AuxLogits.fc"}; }
  std::int64_t feature_dim() const override { return kFeatureDim; }
  std::string architecture() const override { return "inception_v3"; }

 private:
  // Through Mixed_7c. With `auxiliary`, the auxiliary classifier's logits are computed from
  // Mixed_6e's output when it trains (the network and the AuxLogits block in training mode).
  torch::Tensor run(const torch::Tensor& images, torch::Tensor* auxiliary) {
    torch::Tensor x = images;
    for (std::size_t i = 0; i < stem_.size(); ++i) {
      x = stem_[i](x);
      if (i == 2 || i == 4) x = max_pool3x3_stride2(x);  // maxpool1 after Conv2d_2b, maxpool2 after Conv2d_4a
    }
    for (std::size_t i = 0; i < mixed_.size(); ++i) {
      x = mixed_[i].forward(x);
      if (i == kLastBeforeAux && auxiliary && is_training() && aux_->is_training()) {
        if (x.size(2) < kAuxMinimumMap || x.size(3) < kAuxMinimumMap) {
          throw std::invalid_argument(
              "inception_v3's auxiliary classifier needs a 17x17 Mixed_6e map while it trains (299 px inputs); "
              "these " + std::to_string(images.size(2)) + " px inputs give " + std::to_string(x.size(2)) + "x" +
              std::to_string(x.size(3)) + ": set augment.image_size = 299, or keep AuxLogits frozen "
              "(finetune.unfreeze_from = \"Mixed_7a\")");
        }
        *auxiliary = aux_(x);
      }
    }
    return x;
  }

  static constexpr std::size_t kLastBeforeAux = 7;  // Mixed_6e, the eighth mixed block
  std::vector<BasicConv2d> stem_;
  std::vector<nn::AnyModule> mixed_;
  InceptionAux aux_{nullptr};
  std::vector<std::string> blocks_;
  nn::AnyModule head_;
};

}  // namespace

Classifier make_inception_v3(const HeadSpec& head) { return std::make_shared<InceptionV3Impl>(head); }

}  // namespace petal::models
