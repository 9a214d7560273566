#pragma once
#include <ATen/core/Tensor.h>

#include <cstdint>

namespace petal {

// MixUp and CutMix: batch-level augmentations that blend each sample with a partner from the same
// batch (a seeded permutation) and blend the targets in the same proportion.
//
// Determinism: every random choice (lambda, permutation, box, MixUp or CutMix) is drawn from
// petal's own generator seeded by (seed, step) (stages/augment/rng.h), never from torch's global
// generator, so a training step mixes identically on every run.

struct MixedBatch {
  at::Tensor images;    // the mixed images: same shape, dtype and memory format as the input
  at::Tensor targets;   // [N, classes] float32: lambda * onehot(labels_a) + (1 - lambda) * onehot(labels_b)
  at::Tensor labels_a;  // [N] int64, the original labels
  at::Tensor labels_b;  // [N] int64, the partners' labels (labels_a[perm])
  at::Tensor perm;      // [N] int64, the partner of sample i is perm[i]
  double lambda = 1;    // the weight of labels_a, in [0, 1]
  bool cutmix = false;
};

// MixUp (Zhang et al. 2018): lambda ~ Beta(alpha, alpha); images = lambda x + (1 - lambda) x[perm].
MixedBatch mixup(const at::Tensor& images, const at::Tensor& labels, std::int64_t num_classes, double alpha,
                 std::uint64_t seed, std::int64_t step);

// CutMix (Yun et al. 2019): a box of area about (1 - lambda0) of the image, lambda0 ~ Beta(alpha,
// alpha), centred uniformly and clipped at the borders, is pasted from x[perm]; lambda is then
// 1 - (the box's actual area / the image's area), so targets match the pixels exactly.
MixedBatch cutmix(const at::Tensor& images, const at::Tensor& labels, std::int64_t num_classes, double alpha,
                  std::uint64_t seed, std::int64_t step);

struct MixOptions {
  double mixup_alpha = 0.2;   // 0 disables MixUp
  double cutmix_alpha = 1.0;  // 0 disables CutMix
  double probability = 1.0;   // chance that a batch is mixed at all
  double cutmix_share = 0.5;  // when both are enabled: chance of CutMix rather than MixUp
};

// Picks MixUp, CutMix or nothing for this step per `options`; an unmixed batch has lambda 1,
// one-hot targets and perm = identity.
MixedBatch mix_batch(const at::Tensor& images, const at::Tensor& labels, std::int64_t num_classes,
                     const MixOptions& options, std::uint64_t seed, std::int64_t step);

// Cross-entropy against soft targets: mean over the batch of -sum(targets * log_softmax(logits)).
at::Tensor soft_target_cross_entropy(const at::Tensor& logits, const at::Tensor& targets);

// A Beta(a, b) draw from petal's generator (Marsaglia-Tsang gamma variates), in [0, 1].
double sample_beta(std::uint64_t seed, std::int64_t step, double a, double b);

}  // namespace petal
