#include "stages/augment/augment_pipeline.h"

#include "stages/augment/color_ops.h"
#include "stages/augment/geometry_ops.h"
#include "stages/augment/rng.h"

namespace petal::augment {

namespace {

// The op's private stream for this sample; its first draw decides whether the op applies.
Rng op_rng(const SampleKey& key, Op op) {
  return Rng(stream_seed(key.seed, key.epoch, key.index, static_cast<std::uint64_t>(Stream::OpBase) + static_cast<std::uint64_t>(op)));
}

// Rng for `op` if the op fires for this sample.
bool fires(const Policy& policy, const SampleKey& key, Op op, Rng& rng) {
  if (!policy.active(op)) return false;
  rng = op_rng(key, op);
  return rng.chance(policy[op].probability);
}

}  // namespace

cv::Mat eval_transform(const cv::Mat& rgb, int image_size, int eval_resize) {
  return eval_view(rgb, image_size, eval_resize);
}

cv::Mat augment_sample(const cv::Mat& rgb, const Policy& policy, const SampleKey& key, int image_size,
                       int eval_resize) {
  Rng rng(0);
  // Invariant: both branches return a new image, so the in-place colour ops below never write to
  // `rgb`, which may be a read-only view into the memory-mapped cache.
  cv::Mat image;
  if (fires(policy, key, Op::Crop, rng)) {
    image = crop_resize(rgb, random_resized_crop_rect(rgb.size(), policy[Op::Crop].magnitude, rng), image_size);
  } else {
    image = eval_view(rgb, image_size, eval_resize);
  }
  const double side = image_size;
  if (fires(policy, key, Op::HFlip, rng)) image = hflip(image);
  if (fires(policy, key, Op::VFlip, rng)) image = vflip(image);

  // Rotation, shift and zoom compose into one affine resampling.
  double degrees = 0, scale = 1, dx = 0, dy = 0;
  bool any_affine = false;
  if (fires(policy, key, Op::Rotate, rng)) {
    const double m = policy[Op::Rotate].magnitude;
    degrees = rng.uniform(-m, m);
    any_affine = true;
  }
  if (fires(policy, key, Op::Translate, rng)) {
    const double m = policy[Op::Translate].magnitude * side;
    dx = rng.uniform(-m, m);
    dy = rng.uniform(-m, m);
    any_affine = true;
  }
  if (fires(policy, key, Op::Scale, rng)) {
    const double m = policy[Op::Scale].magnitude;
    scale = rng.uniform(1 - m, 1 + m);
    any_affine = true;
  }
  if (any_affine) image = affine(image, degrees, scale, dx, dy);

  // Elastic and optical distortions compose into one remap.
  Rng elastic_rng(0), optical_rng(0);
  const bool elastic = fires(policy, key, Op::Elastic, elastic_rng);
  const bool optical = fires(policy, key, Op::Optical, optical_rng);
  if (elastic || optical) {
    WarpField field = identity_field(image.size());
    if (optical) {
      const double m = policy[Op::Optical].magnitude;
      add_optical_distortion(field, optical_rng.uniform(-m, m));
    }
    if (elastic) add_elastic_distortion(field, policy[Op::Elastic].magnitude * side, elastic_rng);
    image = remap(image, field);
  }

  if (fires(policy, key, Op::Brightness, rng)) {
    const double m = policy[Op::Brightness].magnitude;
    adjust_brightness(image, rng.uniform(1 - m, 1 + m));
  }
  if (fires(policy, key, Op::Contrast, rng)) {
    const double m = policy[Op::Contrast].magnitude;
    adjust_contrast(image, rng.uniform(1 - m, 1 + m));
  }
  if (fires(policy, key, Op::Saturation, rng)) {
    const double m = policy[Op::Saturation].magnitude;
    adjust_saturation(image, rng.uniform(1 - m, 1 + m));
  }
  if (fires(policy, key, Op::Hue, rng)) {
    const double m = policy[Op::Hue].magnitude;
    shift_hue(image, rng.uniform(-m, m));
  }
  if (fires(policy, key, Op::Blur, rng)) gaussian_blur(image, rng.uniform(0.1, policy[Op::Blur].magnitude));
  if (fires(policy, key, Op::Noise, rng)) add_noise(image, rng.uniform(0, policy[Op::Noise].magnitude), rng);
  if (fires(policy, key, Op::Erase, rng)) erase(image, random_erase_rect(image.size(), policy[Op::Erase].magnitude, rng));
  return image;
}

}  // namespace petal::augment
