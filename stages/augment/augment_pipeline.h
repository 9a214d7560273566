#pragma once
#include <cstdint>
#include <opencv2/core.hpp>

#include "stages/augment/augment_policy.h"

namespace petal::augment {

// Which sample is being augmented. The augmentation is a pure function of (seed, epoch, index)
// and the policy: sample `index` (its row in the image cache, not its position in a shuffled
// batch) gets the same pixels whichever worker builds it, in whatever order.
struct SampleKey {
  std::uint64_t seed = 0;
  std::uint64_t epoch = 0;
  std::uint64_t index = 0;
};

// A training sample: `policy`'s ops in Op order, each applied with its probability; the result is
// image_size x image_size uint8 RGB. Every op draws from its own stream (rng.h), so changing one
// op's setting leaves the other ops' draws unchanged. Without the crop op (or when its draw
// misses) the sample is the evaluation view.
cv::Mat augment_sample(const cv::Mat& rgb, const Policy& policy, const SampleKey& key, int image_size,
                       int eval_resize);

// The evaluation transform: resize the short side to eval_resize, centre crop image_size
// (done as one resampling of the matching source square: geometry_ops.h eval_view).
cv::Mat eval_transform(const cv::Mat& rgb, int image_size, int eval_resize);

}  // namespace petal::augment
