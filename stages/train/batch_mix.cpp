#include "stages/train/batch_mix.h"

#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "stages/augment/rng.h"

namespace petal {

using augment::Rng;

namespace {

// Stream ids within Stream::Mix: the mixing itself, and mix_batch's choice of method.
constexpr std::uint64_t kMixDraws = 0, kMixChoice = 1;

Rng mix_rng(std::uint64_t seed, std::int64_t step, std::uint64_t which) {
  return Rng(augment::stream_seed(seed, static_cast<std::uint64_t>(step), which,
                                  static_cast<std::uint64_t>(augment::Stream::Mix)));
}

// Gamma(shape, 1) by Marsaglia and Tsang (2000); shape < 1 via Gamma(shape + 1) * U^(1/shape).
double sample_gamma(Rng& rng, double shape) {
  if (shape < 1) {
    const double u = 1.0 - rng.uniform();  // (0, 1]
    return sample_gamma(rng, shape + 1) * std::pow(u, 1.0 / shape);
  }
  const double d = shape - 1.0 / 3.0, c = 1.0 / std::sqrt(9.0 * d);
  while (true) {
    double x, v;
    do {
      x = rng.normal();
      v = 1.0 + c * x;
    } while (v <= 0);
    v = v * v * v;
    const double u = 1.0 - rng.uniform();
    if (u < 1.0 - 0.0331 * x * x * x * x || std::log(u) < 0.5 * x * x + d * (1.0 - v + std::log(v))) return d * v;
  }
}

double beta(Rng& rng, double a, double b) {
  const double x = sample_gamma(rng, a), y = sample_gamma(rng, b);
  return x + y > 0 ? x / (x + y) : 0.5;
}

void check_inputs(const at::Tensor& images, const at::Tensor& labels, std::int64_t num_classes) {
  if (images.dim() != 4) throw std::invalid_argument("batch mixing needs NCHW images");
  if (labels.dim() != 1 || labels.size(0) != images.size(0) || labels.scalar_type() != at::kLong) {
    throw std::invalid_argument("batch mixing needs one int64 label per image");
  }
  if (num_classes < 1) throw std::invalid_argument("batch mixing needs num_classes >= 1");
}

at::Tensor permutation(Rng& rng, std::int64_t n) {
  at::Tensor perm = at::empty({n}, at::TensorOptions().dtype(at::kLong));
  std::int64_t* p = perm.data_ptr<std::int64_t>();
  for (std::int64_t i = 0; i < n; ++i) p[i] = i;
  for (std::int64_t i = n; i > 1; --i) std::swap(p[i - 1], p[rng.below(static_cast<std::uint64_t>(i))]);
  return perm;
}

at::Tensor soft_targets(const at::Tensor& a, const at::Tensor& b, std::int64_t num_classes, double lambda) {
  const std::int64_t n = a.size(0);
  at::Tensor targets = at::zeros({n, num_classes}, at::TensorOptions().dtype(at::kFloat));
  float* t = targets.data_ptr<float>();
  const at::Tensor ac = a.contiguous(), bc = b.contiguous();
  const std::int64_t* pa = ac.data_ptr<std::int64_t>();
  const std::int64_t* pb = bc.data_ptr<std::int64_t>();
  for (std::int64_t i = 0; i < n; ++i) {
    if (pa[i] < 0 || pa[i] >= num_classes || pb[i] < 0 || pb[i] >= num_classes) {
      throw std::invalid_argument("batch mixing: a label is outside [0, num_classes)");
    }
    t[i * num_classes + pa[i]] += static_cast<float>(lambda);
    t[i * num_classes + pb[i]] += static_cast<float>(1.0 - lambda);
  }
  return targets;
}

MixedBatch finish(at::Tensor images, const at::Tensor& labels, at::Tensor perm, std::int64_t num_classes,
                  double lambda, bool is_cutmix) {
  MixedBatch out;
  out.images = std::move(images);
  out.labels_a = labels;
  out.labels_b = labels.index_select(0, perm);
  out.targets = soft_targets(out.labels_a, out.labels_b, num_classes, lambda);
  out.perm = std::move(perm);
  out.lambda = lambda;
  out.cutmix = is_cutmix;
  return out;
}

}  // namespace

double sample_beta(std::uint64_t seed, std::int64_t step, double a, double b) {
  Rng rng = mix_rng(seed, step, kMixDraws);
  return beta(rng, a, b);
}

MixedBatch mixup(const at::Tensor& images, const at::Tensor& labels, std::int64_t num_classes, double alpha,
                 std::uint64_t seed, std::int64_t step) {
  check_inputs(images, labels, num_classes);
  if (!(alpha > 0)) throw std::invalid_argument("mixup: alpha must be > 0");
  Rng rng = mix_rng(seed, step, kMixDraws);
  const double lambda = beta(rng, alpha, alpha);
  at::Tensor perm = permutation(rng, images.size(0));
  // The permutation is drawn on the CPU (labels stay there); the images may be on a GPU.
  at::Tensor mixed = images.mul(lambda).add_(images.index_select(0, perm.to(images.device())), 1.0 - lambda);
  return finish(std::move(mixed), labels, std::move(perm), num_classes, lambda, false);
}

MixedBatch cutmix(const at::Tensor& images, const at::Tensor& labels, std::int64_t num_classes, double alpha,
                  std::uint64_t seed, std::int64_t step) {
  check_inputs(images, labels, num_classes);
  if (!(alpha > 0)) throw std::invalid_argument("cutmix: alpha must be > 0");
  Rng rng = mix_rng(seed, step, kMixDraws);
  const double lambda0 = beta(rng, alpha, alpha);
  at::Tensor perm = permutation(rng, images.size(0));
  const std::int64_t h = images.size(2), w = images.size(3);
  const double cut = std::sqrt(1.0 - lambda0);
  const auto cut_w = static_cast<std::int64_t>(w * cut), cut_h = static_cast<std::int64_t>(h * cut);
  const auto cx = static_cast<std::int64_t>(rng.below(static_cast<std::uint64_t>(w)));
  const auto cy = static_cast<std::int64_t>(rng.below(static_cast<std::uint64_t>(h)));
  const std::int64_t x1 = std::clamp<std::int64_t>(cx - cut_w / 2, 0, w), x2 = std::clamp<std::int64_t>(cx + cut_w / 2, 0, w);
  const std::int64_t y1 = std::clamp<std::int64_t>(cy - cut_h / 2, 0, h), y2 = std::clamp<std::int64_t>(cy + cut_h / 2, 0, h);
  at::Tensor mixed = images.clone();
  if (x2 > x1 && y2 > y1) {
    mixed.slice(2, y1, y2).slice(3, x1, x2).copy_(images.slice(2, y1, y2).slice(3, x1, x2).index_select(0, perm.to(images.device())));
  }
  const double lambda = 1.0 - static_cast<double>((x2 - x1) * (y2 - y1)) / static_cast<double>(w * h);
  return finish(std::move(mixed), labels, std::move(perm), num_classes, lambda, true);
}

MixedBatch mix_batch(const at::Tensor& images, const at::Tensor& labels, std::int64_t num_classes,
                     const MixOptions& options, std::uint64_t seed, std::int64_t step) {
  check_inputs(images, labels, num_classes);
  Rng choice = mix_rng(seed, step, kMixChoice);
  const bool use_mixup = options.mixup_alpha > 0, use_cutmix = options.cutmix_alpha > 0;
  if ((use_mixup || use_cutmix) && choice.chance(options.probability)) {
    const bool pick_cutmix = use_cutmix && (!use_mixup || choice.chance(options.cutmix_share));
    return pick_cutmix ? cutmix(images, labels, num_classes, options.cutmix_alpha, seed, step)
                       : mixup(images, labels, num_classes, options.mixup_alpha, seed, step);
  }
  at::Tensor identity = at::empty({images.size(0)}, at::TensorOptions().dtype(at::kLong));
  std::int64_t* p = identity.data_ptr<std::int64_t>();
  for (std::int64_t i = 0; i < images.size(0); ++i) p[i] = i;
  return finish(images, labels, std::move(identity), num_classes, 1.0, false);
}

at::Tensor soft_target_cross_entropy(const at::Tensor& logits, const at::Tensor& targets) {
  return targets.mul(logits.log_softmax(1)).sum(1).mean().neg();
}

}  // namespace petal
