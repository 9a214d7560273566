// The LibTorch side of the data path: BatchLoader over the image cache, MixUp and CutMix.
// LibTorch's headers bring glog's CHECK macros: include them first, then let doctest's replace them.
#include <ATen/ATen.h>

#include "stages/train/batch_mix.h"
#include "stages/train/loader.h"

#include "tests/support/torch_doctest.h"

#include <opencv2/core.hpp>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <numeric>
#include <thread>

#include "stages/augment/augment_config.h"
#include "stages/augment/augment_pipeline.h"
#include "stages/augment/image_cache.h"
#include "stages/augment/normalize.h"
#include "stages/augment/policy_presets.h"
#include "tests/support/test_support.h"

using namespace petal;
using petal::test::TempDir;
namespace fs = std::filesystem;

namespace {

constexpr int kTrain = 37, kVal = 6, kSize = 32;

// An augment stage's output: kTrain + kVal textured images of a few sizes in 3 classes, the
// medium policy, seed 5, 32 px samples.
void make_data(const fs::path& dir) {
  augment::ImageCacheWriter writer(dir, {"a", "b", "c"}, 37);
  for (int i = 0; i < kTrain + kVal; ++i) {
    cv::Mat image(37 + i % 3, 40 + i % 5, CV_8UC3);
    cv::RNG rng(static_cast<std::uint64_t>(i + 1));
    rng.fill(image, cv::RNG::UNIFORM, 0, 256);
    // Train and val interleaved, so split selection is exercised.
    writer.add(image, i % 3, i % 7 == 3 && i / 7 < kVal ? "val" : "train", "img" + std::to_string(i) + ".png");
  }
  writer.finish();
  augment::AugmentSettings settings;
  settings.policy = augment::preset_policy("medium");
  settings.seed = 5;
  settings.image_size = kSize;
  settings.eval_resize = 37;
  settings.cache_short_side = 37;
  settings.write(dir);
}

LoaderOptions train_options(const fs::path& dir, int workers, std::int64_t batch = 8) {
  LoaderOptions options;
  options.data_dir = dir;
  options.batch_size = batch;
  options.workers = workers;
  return options;
}

struct Epoch {
  std::vector<std::int64_t> indices;
  std::vector<at::Tensor> images;
  std::vector<at::Tensor> labels;
};

Epoch run_epoch(BatchLoader& loader, std::int64_t epoch) {
  Epoch out;
  loader.start_epoch(epoch);
  while (auto batch = loader.next()) {
    REQUIRE(batch->epoch == epoch);
    REQUIRE(batch->number == static_cast<std::int64_t>(out.images.size()));
    const auto* p = batch->indices.data_ptr<std::int64_t>();
    out.indices.insert(out.indices.end(), p, p + batch->indices.size(0));
    out.images.push_back(batch->images);
    out.labels.push_back(batch->labels);
  }
  return out;
}

bool all_equal(const std::vector<at::Tensor>& a, const std::vector<at::Tensor>& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (!at::equal(a[i].contiguous(), b[i].contiguous())) return false;
  }
  return true;
}

// Distinct images at every position: sample i, channel c, pixel p holds i * 10000 + c * 1000 + p.
at::Tensor distinct_images(std::int64_t n, std::int64_t side) {
  return at::arange(n * 3 * side * side, at::kFloat).reshape({n, 3, side, side}).remainder(1000.0) +
         at::arange(n, at::kFloat).reshape({n, 1, 1, 1}) * 10000.0;
}

}  // namespace

TEST_CASE("the loader hands out NCHW float batches with int64 labels") {
  TempDir dir;
  make_data(dir.path());
  BatchLoader loader(train_options(dir.path(), 2));
  CHECK(loader.samples() == kTrain);
  CHECK(loader.batches_per_epoch() == 5);
  CHECK(loader.image_size() == kSize);
  CHECK(loader.classes() == std::vector<std::string>{"a", "b", "c"});
  loader.start_epoch(0);
  std::vector<std::int64_t> sizes;
  while (auto batch = loader.next()) {
    sizes.push_back(batch->images.size(0));
    CHECK((batch->images.sizes() == at::IntArrayRef({batch->images.size(0), 3, kSize, kSize})));
    CHECK((batch->images.scalar_type() == at::kFloat));
    CHECK(batch->images.is_contiguous());
    CHECK((batch->labels.scalar_type() == at::kLong));
    CHECK((batch->labels.sizes() == at::IntArrayRef({batch->images.size(0)})));
    CHECK((batch->indices.scalar_type() == at::kLong));
  }
  CHECK(sizes == std::vector<std::int64_t>{8, 8, 8, 8, 5});
  CHECK_FALSE(loader.next());  // stays finished
}

TEST_CASE("a sample's tensor is the normalised augmentation of (seed, epoch, cache row)") {
  TempDir dir;
  make_data(dir.path());
  BatchLoader loader(train_options(dir.path(), 3));
  loader.start_epoch(4);
  const Batch batch = *loader.next();
  const augment::ImageCache cache(dir.path());
  const augment::AugmentSettings settings = augment::AugmentSettings::read(dir.path());
  for (std::int64_t j = 0; j < batch.images.size(0); ++j) {
    const auto row = static_cast<std::size_t>(batch.indices[j].item<std::int64_t>());
    const cv::Mat sample = augment::augment_sample(cache.image(row), settings.policy, {5, 4, row}, kSize, 37);
    std::vector<float> expected(3 * kSize * kSize);
    augment::normalize_into(sample, expected.data());
    CHECK(std::memcmp(expected.data(), batch.images[j].data_ptr<float>(), expected.size() * sizeof(float)) == 0);
    CHECK(batch.labels[j].item<std::int64_t>() == cache.entry(row).label);
  }
}

TEST_CASE("every sample exactly once per epoch, the same order for the same seed and epoch") {
  TempDir dir;
  make_data(dir.path());
  BatchLoader three(train_options(dir.path(), 3));
  BatchLoader one(train_options(dir.path(), 1));
  const Epoch e0 = run_epoch(three, 0);
  const Epoch e1 = run_epoch(three, 1);

  std::vector<std::int64_t> expected;
  const augment::ImageCache cache(dir.path());
  for (std::size_t i : cache.indices_of("train")) expected.push_back(static_cast<std::int64_t>(i));
  for (const Epoch* e : {&e0, &e1}) {
    std::vector<std::int64_t> sorted = e->indices;
    std::sort(sorted.begin(), sorted.end());
    CHECK(sorted == expected);
  }
  CHECK(e0.indices != e1.indices);                   // reshuffled every epoch
  CHECK(e0.indices == three.epoch_order(0));
  const Epoch again = run_epoch(one, 0);             // another loader, another worker count
  CHECK(again.indices == e0.indices);
  CHECK(all_equal(again.images, e0.images));         // identical pixels, too
  CHECK(all_equal(again.labels, e0.labels));
  CHECK_FALSE(all_equal(run_epoch(one, 1).images, e0.images));

  LoaderOptions reseeded = train_options(dir.path(), 2);
  reseeded.seed = 6;
  BatchLoader other(reseeded);
  CHECK(run_epoch(other, 0).indices != e0.indices);
}

TEST_CASE("data-parallel shards: each rank gets its contiguous share of every batch, together the whole batch") {
  TempDir dir;
  make_data(dir.path());
  BatchLoader whole(train_options(dir.path(), 2));
  const Epoch full = run_epoch(whole, 1);
  constexpr int kRanks = 3;
  std::vector<Epoch> shards;
  for (int rank = 0; rank < kRanks; ++rank) {
    LoaderOptions options = train_options(dir.path(), 1 + rank % 2);
    options.shard_rank = rank;
    options.shard_count = kRanks;
    BatchLoader loader(options);
    CHECK(loader.batches_per_epoch() == whole.batches_per_epoch());
    loader.start_epoch(1);
    Epoch epoch;
    while (auto batch = loader.next()) {
      // 37 samples in batches of 8: the last batch (5) splits 1/2/2, the others 2/3/3.
      const std::int64_t global = batch->number < 4 ? 8 : 5;
      CHECK(batch->global_count == global);
      CHECK(batch->images.size(0) == global * (rank + 1) / kRanks - global * rank / kRanks);
      epoch.images.push_back(batch->images);
      const auto* p = batch->indices.data_ptr<std::int64_t>();
      epoch.indices.insert(epoch.indices.end(), p, p + batch->indices.size(0));
    }
    shards.push_back(epoch);
  }
  // Batch b of the full loader is rank 0's, rank 1's, rank 2's part of batch b, pixels included.
  std::vector<std::int64_t> joined;
  for (std::size_t b = 0; b < full.images.size(); ++b) {
    std::vector<at::Tensor> parts;
    for (const Epoch& shard : shards) parts.push_back(shard.images[b]);
    CHECK(at::equal(at::cat(parts), full.images[b]));
  }
  std::size_t offset[kRanks] = {0, 0, 0};
  for (std::size_t b = 0; b < full.images.size(); ++b) {
    for (int rank = 0; rank < kRanks; ++rank) {
      const auto n = static_cast<std::size_t>(shards[static_cast<std::size_t>(rank)].images[b].size(0));
      const auto& indices = shards[static_cast<std::size_t>(rank)].indices;
      joined.insert(joined.end(), indices.begin() + static_cast<std::ptrdiff_t>(offset[rank]),
                    indices.begin() + static_cast<std::ptrdiff_t>(offset[rank] + n));
      offset[rank] += n;
    }
  }
  CHECK(joined == full.indices);

  LoaderOptions bad = train_options(dir.path(), 1);
  bad.shard_rank = 3;
  bad.shard_count = 3;
  CHECK_THROWS_AS(BatchLoader{bad}, std::invalid_argument);
}

TEST_CASE("channels-last batches hold the same values in NHWC memory order") {
  TempDir dir;
  make_data(dir.path());
  LoaderOptions options = train_options(dir.path(), 2);
  options.channels_last = true;
  BatchLoader nhwc(options);
  BatchLoader nchw(train_options(dir.path(), 2));
  nhwc.start_epoch(2);
  nchw.start_epoch(2);
  const Batch a = *nhwc.next(), b = *nchw.next();
  CHECK(a.images.is_contiguous(at::MemoryFormat::ChannelsLast));
  CHECK((a.images.sizes() == b.images.sizes()));
  CHECK(at::equal(a.images.contiguous(), b.images));
}

TEST_CASE("evaluation mode: cache order, resize and centre crop, no augmentation") {
  TempDir dir;
  make_data(dir.path());
  BatchLoader loader(LoaderOptions::evaluation(dir.path(), "val", 4));
  CHECK(loader.samples() == kVal);
  const augment::ImageCache cache(dir.path());
  std::vector<std::int64_t> val;
  for (std::size_t i : cache.indices_of("val")) val.push_back(static_cast<std::int64_t>(i));
  const Epoch e0 = run_epoch(loader, 0);
  CHECK(e0.indices == val);
  CHECK(all_equal(run_epoch(loader, 1).images, e0.images));  // the same every epoch
  const cv::Mat view = augment::eval_transform(cache.image(static_cast<std::size_t>(val[0])), kSize, 37);
  std::vector<float> expected(3 * kSize * kSize);
  augment::normalize_into(view, expected.data());
  CHECK(std::memcmp(expected.data(), e0.images[0].data_ptr<float>(), expected.size() * sizeof(float)) == 0);

  LoaderOptions inception = LoaderOptions::evaluation(dir.path(), "val", 4);
  inception.normalization = augment::Normalization::inception();
  BatchLoader inception_loader(inception);
  augment::normalize_into(view, expected.data(), false, augment::NormalizationTable(inception.normalization));
  CHECK(std::memcmp(expected.data(), run_epoch(inception_loader, 0).images[0].data_ptr<float>(),
                    expected.size() * sizeof(float)) == 0);
}

TEST_CASE("prefetching is bounded: at most `prefetch` batches are built ahead") {
  TempDir dir;
  make_data(dir.path());
  LoaderOptions options = train_options(dir.path(), 3, 4);
  options.prefetch = 2;
  BatchLoader loader(options);
  CHECK(loader.prefetch() == 2);
  loader.start_epoch(0);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // a slow consumer: workers must wait
  CHECK(loader.peak_in_flight() == 2);
  int batches = 0;
  while (auto batch = loader.next()) {
    ++batches;
    if (batches % 3 == 0) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  CHECK(batches == 10);
  CHECK(loader.peak_in_flight() == 2);
  CHECK(BatchLoader(train_options(dir.path(), 3)).prefetch() == 6);  // default: 2 x workers
}

TEST_CASE("drop_last, restarting an epoch midway, and misuse") {
  TempDir dir;
  make_data(dir.path());
  LoaderOptions options = train_options(dir.path(), 2);
  options.drop_last = true;
  BatchLoader loader(options);
  CHECK(loader.batches_per_epoch() == 4);
  CHECK_THROWS_AS(loader.next(), std::logic_error);
  loader.start_epoch(0);
  loader.next();
  const Epoch restarted = run_epoch(loader, 3);  // abandons epoch 0 after one batch
  CHECK(restarted.indices.size() == 32);
  const auto order = loader.epoch_order(3);
  CHECK(restarted.indices == std::vector<std::int64_t>(order.begin(), order.begin() + 32));
  CHECK_THROWS_AS(BatchLoader(train_options(dir / "missing", 1)), std::runtime_error);
}

// ---- MixUp and CutMix ----

TEST_CASE("MixUp blends images and targets by lambda, deterministically for a seed and step") {
  const at::Tensor images = distinct_images(8, 6);
  const at::Tensor labels = at::arange(8, at::kLong).remainder(3);
  const MixedBatch m = mixup(images, labels, 3, 0.4, 11, 0);
  CHECK(m.lambda >= 0);
  CHECK(m.lambda <= 1);
  CHECK_FALSE(m.cutmix);
  CHECK(at::allclose(m.images, images * m.lambda + images.index_select(0, m.perm) * (1 - m.lambda), 1e-4, 1e-3));
  CHECK(at::equal(m.labels_b, labels.index_select(0, m.perm)));
  CHECK((m.targets.sizes() == at::IntArrayRef({8, 3})));
  CHECK(at::allclose(m.targets.sum(1), at::ones({8})));
  for (std::int64_t i = 0; i < 8; ++i) {
    const auto a = labels[i].item<std::int64_t>(), b = m.labels_b[i].item<std::int64_t>();
    if (a != b) {
      CHECK(m.targets[i][a].item<float>() == doctest::Approx(m.lambda));
      CHECK(m.targets[i][b].item<float>() == doctest::Approx(1 - m.lambda));
    } else {
      CHECK(m.targets[i][a].item<float>() == doctest::Approx(1.0));
    }
  }
  const MixedBatch same = mixup(images, labels, 3, 0.4, 11, 0);
  CHECK(same.lambda == m.lambda);
  CHECK(at::equal(same.perm, m.perm));
  CHECK(at::equal(same.images, m.images));
  const MixedBatch next = mixup(images, labels, 3, 0.4, 11, 1);
  CHECK(next.lambda != m.lambda);
}

TEST_CASE("CutMix pastes a box whose area matches 1 - lambda, deterministically") {
  const at::Tensor images = distinct_images(6, 16);
  const at::Tensor labels = at::arange(6, at::kLong);
  for (std::int64_t step = 0; step < 20; ++step) {
    CAPTURE(step);
    const MixedBatch c = cutmix(images, labels, 6, 1.0, 3, step);
    REQUIRE(c.cutmix);
    REQUIRE(c.lambda >= 0);
    REQUIRE(c.lambda <= 1);
    for (std::int64_t i = 0; i < 6; ++i) {
      if (c.perm[i].item<std::int64_t>() == i) continue;  // its own partner: nothing visible changes
      // Fraction of pixel positions taken from the partner (images differ everywhere).
      const double changed = (c.images[i][0] != images[i][0]).to(at::kFloat).mean().item<double>();
      REQUIRE(changed == doctest::Approx(1.0 - c.lambda));
      REQUIRE(c.targets[i][i].item<float>() == doctest::Approx(c.lambda));
    }
  }
  const MixedBatch a = cutmix(images, labels, 6, 1.0, 3, 7), b = cutmix(images, labels, 6, 1.0, 3, 7);
  CHECK(at::equal(a.images, b.images));
  CHECK(a.lambda == b.lambda);
}

TEST_CASE("Beta draws lie in [0, 1] with the right mean, and mix_batch honours its options") {
  double sum = 0, sum_sq = 0;
  constexpr int kDraws = 4000;
  for (int s = 0; s < kDraws; ++s) {
    const double x = sample_beta(1, s, 1.0, 1.0);  // Beta(1, 1) = uniform
    REQUIRE(x >= 0);
    REQUIRE(x <= 1);
    sum += x;
    sum_sq += x * x;
  }
  CHECK(sum / kDraws == doctest::Approx(0.5).epsilon(0.05));
  CHECK(sum_sq / kDraws - (sum / kDraws) * (sum / kDraws) == doctest::Approx(1.0 / 12).epsilon(0.1));
  double small = 0;
  for (int s = 0; s < kDraws; ++s) small += sample_beta(2, s, 0.2, 0.2);
  CHECK(small / kDraws == doctest::Approx(0.5).epsilon(0.1));

  const at::Tensor images = distinct_images(4, 8);
  const at::Tensor labels = at::arange(4, at::kLong);
  MixOptions never;
  never.probability = 0;
  const MixedBatch plain = mix_batch(images, labels, 4, never, 1, 0);
  CHECK(plain.lambda == 1);
  CHECK(at::equal(plain.images, images));
  CHECK(at::equal(plain.targets, at::eye(4)));
  MixOptions only_cutmix;
  only_cutmix.mixup_alpha = 0;
  CHECK(mix_batch(images, labels, 4, only_cutmix, 1, 0).cutmix);
  MixOptions only_mixup;
  only_mixup.cutmix_alpha = 0;
  CHECK_FALSE(mix_batch(images, labels, 4, only_mixup, 1, 0).cutmix);
}

TEST_CASE("soft-target cross-entropy equals the usual loss for one-hot targets") {
  const at::Tensor logits = at::linspace(-2, 3, 12).reshape({4, 3});
  const at::Tensor labels = at::tensor(std::vector<std::int64_t>{0, 2, 1, 2});
  const at::Tensor one_hot = at::one_hot(labels, 3).to(at::kFloat);
  const double expected = at::nll_loss(logits.log_softmax(1), labels).item<double>();
  CHECK(soft_target_cross_entropy(logits, one_hot).item<double>() == doctest::Approx(expected));
}
