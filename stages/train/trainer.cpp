#include "stages/train/trainer.h"

#include <torch/nn/functional/loss.h>
#include <torch/nn/utils/clip_grad.h>

#include <chrono>
#include <cmath>
#include <fstream>
#include <sstream>
#include <tuple>

#include "stages/train/checkpoint.h"
#include "stages/train/classification_metrics.h"
#include "stages/train/distributed/data_parallel.h"
#include "stages/train/loader.h"
#include "stages/train/mixed_precision.h"
#include "stages/train/weight_average.h"
#include "stages/train/weights/state_dict_load.h"

namespace petal::train {

namespace fs = std::filesystem;
using nlohmann::json;

nlohmann::json EpochStats::to_json() const {
  return {{"epoch", epoch},       {"train_loss", train_loss}, {"train_accuracy", train_accuracy},
          {"train_f1", train_f1}, {"val_loss", val_loss},     {"val_accuracy", val_accuracy},
          {"val_f1", val_f1},     {"lr", lr},                 {"epoch_seconds", seconds},
          {"images_per_second", images_per_second}};
}

EpochStats EpochStats::from_json(const nlohmann::json& j) {
  EpochStats s;
  s.epoch = j.at("epoch");
  s.train_loss = j.at("train_loss");
  s.train_accuracy = j.at("train_accuracy");
  s.train_f1 = j.at("train_f1");
  s.val_loss = j.at("val_loss");
  s.val_accuracy = j.at("val_accuracy");
  s.val_f1 = j.at("val_f1");
  s.lr = j.at("lr");
  s.seconds = j.at("epoch_seconds");
  s.images_per_second = j.at("images_per_second");
  return s;
}

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

// Torch's global generator drives dropout and stochastic depth. Re-seeding it from (seed, epoch)
// at every epoch makes an epoch's randomness independent of how the run got there, so a resumed
// run repeats exactly what an uninterrupted one does.
void seed_epoch(std::uint64_t seed, std::int64_t epoch) {
  std::uint64_t x = seed * 0x9E3779B97F4A7C15ull + static_cast<std::uint64_t>(epoch) + 1;
  x ^= x >> 31;
  x *= 0xBF58476D1CE4E5B9ull;
  x ^= x >> 29;
  torch::manual_seed(x & 0x7FFFFFFFFFFFull);
}

// n / (classes x count) per class over the train split of the image cache (sklearn's "balanced").
torch::Tensor balanced_weights(const fs::path& data_dir, std::int64_t classes) {
  std::ifstream in(data_dir / "index.tsv");
  std::string line;
  std::getline(in, line);  // header: offset height width label split path
  std::vector<double> counts(static_cast<std::size_t>(classes), 0);
  double total = 0;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string offset, height, width, label, split;
    std::getline(fields, offset, '\t');
    std::getline(fields, height, '\t');
    std::getline(fields, width, '\t');
    std::getline(fields, label, '\t');
    std::getline(fields, split, '\t');
    if (split != "train") continue;
    const long index = std::stol(label);
    if (index >= 0 && index < classes) {
      counts[static_cast<std::size_t>(index)] += 1;
      total += 1;
    }
  }
  std::vector<float> weights;
  for (const double count : counts) weights.push_back(count > 0 ? static_cast<float>(total / (classes * count)) : 0.0f);
  return torch::tensor(weights);
}

struct PhaseTotals {
  explicit PhaseTotals(std::int64_t classes) : confusion(classes) {}
  double loss_sum = 0;
  std::int64_t samples = 0;
  ConfusionMatrix confusion;

  void add(double loss, const torch::Tensor& logits, const torch::Tensor& labels) {
    const std::int64_t n = labels.size(0);
    loss_sum += loss * static_cast<double>(n);
    samples += n;
    const torch::Tensor predicted = logits.argmax(1).cpu();
    const torch::Tensor truth = labels.cpu();
    const auto p = predicted.accessor<std::int64_t, 1>();
    const auto t = truth.accessor<std::int64_t, 1>();
    for (std::int64_t i = 0; i < n; ++i) confusion.add(t[i], p[i]);
  }
  double loss() const { return samples ? loss_sum / static_cast<double>(samples) : 0; }
};

// Every rank's totals become the totals over all ranks (one all-reduce), so all report the same.
void merge_over_ranks(PhaseTotals& totals, Collective* collective) {
  if (!collective) return;
  const std::int64_t k = totals.confusion.classes();
  std::vector<double> values{totals.loss_sum, static_cast<double>(totals.samples)};
  for (std::int64_t t = 0; t < k; ++t) {
    for (std::int64_t p = 0; p < k; ++p) values.push_back(static_cast<double>(totals.confusion.count(t, p)));
  }
  values = sum_over_ranks(values, *collective);
  PhaseTotals merged(k);
  merged.loss_sum = values[0];
  merged.samples = static_cast<std::int64_t>(values[1]);
  for (std::int64_t t = 0; t < k; ++t) {
    for (std::int64_t p = 0; p < k; ++p) {
      merged.confusion.add(t, p, static_cast<std::int64_t>(values[static_cast<std::size_t>(2 + t * k + p)]));
    }
  }
  totals = merged;
}

constexpr double kAuxiliaryLossWeight = 0.4;

// True for a final partial batch that would leave a rank fewer than two samples (BatchNorm in
// training mode needs two); such a batch is dropped.
bool tail_too_small(std::int64_t samples, std::int64_t batch_size, int ranks) {
  const std::int64_t tail = samples % batch_size;
  return tail == 1 || (ranks > 1 && tail != 0 && tail < 2 * ranks);
}

// The training loss: cross-entropy with label smoothing and class weights, against hard labels or
// the soft targets of a mixed batch (then the same smoothing and weights apply to the blend).
torch::Tensor training_loss(const torch::Tensor& logits, const MixedBatch* mixed, const torch::Tensor& labels,
                            const torch::Tensor& class_weights, double smoothing) {
  if (!mixed || mixed->lambda >= 1.0) {
    auto options = torch::nn::functional::CrossEntropyFuncOptions().label_smoothing(smoothing);
    if (class_weights.defined()) options.weight(class_weights);
    return torch::nn::functional::cross_entropy(logits, labels, options);
  }
  const std::int64_t classes = logits.size(1);
  torch::Tensor targets = mixed->targets.to(logits.device());
  if (smoothing > 0) targets = targets * (1 - smoothing) + smoothing / static_cast<double>(classes);
  torch::Tensor per_sample = -(targets * logits.log_softmax(1));
  if (class_weights.defined()) {
    // As PyTorch weights hard labels: sum of weighted losses over the sum of the targets' weights.
    per_sample = per_sample * class_weights;
    return per_sample.sum() / (targets * class_weights).sum();
  }
  return per_sample.sum(1).mean();
}

// Features of a whole split from the frozen backbone, in cache order.
std::pair<torch::Tensor, torch::Tensor> extract_features(models::ClassifierImpl& model, BatchLoader& loader,
                                                         const TrainerOptions& options,
                                                         const std::function<bool()>& cancelled) {
  torch::NoGradGuard no_grad;
  model.eval();
  std::vector<torch::Tensor> features, labels;
  loader.start_epoch(0);
  while (auto batch = loader.next()) {
    if (cancelled && cancelled()) throw StageCancelled();
    torch::Tensor images = batch->images.to(options.device);
    features.push_back(model.features(images).to(torch::kFloat32));
    labels.push_back(batch->labels.to(options.device));
  }
  return {torch::cat(features), torch::cat(labels)};
}

// Scores every batch of an evaluation loader (eval mode, plain cross-entropy).
PhaseTotals score_loader(models::ClassifierImpl& model, BatchLoader& loader, const TrainerOptions& options,
                         const std::function<bool()>& cancelled) {
  torch::NoGradGuard no_grad;
  model.eval();
  PhaseTotals totals(static_cast<std::int64_t>(loader.classes().size()));
  loader.start_epoch(0);
  while (auto batch = loader.next()) {
    if (cancelled && cancelled()) throw StageCancelled();
    const torch::Tensor labels = batch->labels.to(options.device);
    const torch::Tensor logits = model.forward(batch->images.to(options.device)).to(torch::kFloat32);
    totals.add(torch::nn::functional::cross_entropy(logits, labels).item<double>(), logits, labels);
  }
  return totals;
}

// One validation pass (plain cross-entropy, comparable across settings), on the cached features of a
// feature-cache run or through the val loader, merged over data-parallel ranks.
PhaseTotals validate(models::ClassifierImpl& model, const torch::Tensor& val_features, const torch::Tensor& val_labels,
                     BatchLoader& val_loader, const TrainerOptions& options, const std::function<bool()>& cancelled) {
  if (!val_features.defined()) {
    PhaseTotals totals = score_loader(model, val_loader, options, cancelled);
    merge_over_ranks(totals, options.collective);
    return totals;
  }
  torch::NoGradGuard no_grad;
  model.eval();
  PhaseTotals totals(static_cast<std::int64_t>(val_loader.classes().size()));
  for (std::int64_t begin = 0; begin < val_features.size(0); begin += options.batch_size) {
    const std::int64_t end = std::min(val_features.size(0), begin + options.batch_size);
    const torch::Tensor logits = model.classify(val_features.slice(0, begin, end)).to(torch::kFloat32);
    const torch::Tensor labels = val_labels.slice(0, begin, end);
    totals.add(torch::nn::functional::cross_entropy(logits, labels).item<double>(), logits, labels);
  }
  return totals;
}

weights::StateDict cpu_copy(torch::nn::Module& model) {
  weights::StateDict state = weights::module_state_dict(model);
  for (auto& entry : state) entry.second = entry.second.to(torch::kCPU, /*non_blocking=*/false, /*copy=*/true);
  return state;
}

}  // namespace

SplitScore evaluate_split(models::ClassifierImpl& model, const fs::path& data_dir, const std::string& split,
                          const TrainerOptions& options, const std::function<bool()>& cancelled) {
  LoaderOptions loader_options = LoaderOptions::evaluation(data_dir, split, options.batch_size);
  loader_options.workers = options.loader_workers;
  loader_options.channels_last = options.channels_last;
  loader_options.normalization = options.normalization;
  BatchLoader loader(loader_options);
  SplitScore score;
  if (loader.samples() == 0) return score;
  const PhaseTotals totals = score_loader(model, loader, options, cancelled);
  score.samples = totals.samples;
  score.loss = totals.loss();
  score.accuracy = totals.confusion.accuracy();
  score.macro_f1 = totals.confusion.macro_f1();
  score.weighted_f1 = totals.confusion.weighted_f1();
  return score;
}

TrainResult train_model(models::ClassifierImpl& model, const fs::path& data_dir, const TrainerOptions& options,
                        const fs::path& resume_dir, StageReport& report, const std::function<bool()>& cancelled,
                        const std::function<void(const std::string&)>& log) {
  const auto say = [&log](const std::string& line) {
    if (log) log(line);
  };
  const std::size_t block_count = model.blocks().size();
  const bool head_only = options.trainable.first_trained_block >= block_count;
  const bool mixing = options.mix.mixup_alpha > 0 || options.mix.cutmix_alpha > 0;
  const bool use_features = head_only && !options.augment && !mixing && options.cache_features;
  Collective* const collective = options.collective;
  const int rank = collective ? collective->rank() : 0;
  const int ranks = collective ? collective->world_size() : 1;
  if (ranks > 1 && options.batch_size < 2 * ranks) {
    throw std::runtime_error("batch_size = " + std::to_string(options.batch_size) + " is too small for " +
                             std::to_string(ranks) + " data-parallel processes: each needs at least 2 samples of "
                             "every batch (batch_size is the global batch); raise batch_size or lower --nproc");
  }

  LoaderOptions train_options;
  train_options.data_dir = data_dir;
  train_options.split = "train";
  train_options.augment = options.augment;
  train_options.shuffle = true;
  train_options.batch_size = options.batch_size;
  train_options.workers = options.loader_workers;
  train_options.channels_last = options.channels_last;
  train_options.normalization = options.normalization;
  train_options.seed = options.seed;
  train_options.shard_rank = rank;
  train_options.shard_count = ranks;
  std::unique_ptr<BatchLoader> train_loader;
  if (!use_features) {
    train_loader = std::make_unique<BatchLoader>(train_options);
    if (tail_too_small(train_loader->samples(), options.batch_size, ranks)) {
      train_options.drop_last = true;
      train_loader = std::make_unique<BatchLoader>(train_options);
    }
  }
  LoaderOptions val_options = LoaderOptions::evaluation(data_dir, "val", options.batch_size);
  val_options.workers = options.loader_workers;
  val_options.channels_last = options.channels_last;
  val_options.normalization = options.normalization;
  val_options.shard_rank = rank;
  val_options.shard_count = ranks;
  BatchLoader val_loader(val_options);
  const std::int64_t classes = static_cast<std::int64_t>(val_loader.classes().size());
  if (val_loader.samples() == 0) throw std::runtime_error("the val split is empty: validation needs images");

  torch::Tensor train_features, train_labels, val_features, val_labels;
  if (use_features) {
    const auto start = Clock::now();
    LoaderOptions extract = LoaderOptions::evaluation(data_dir, "train", options.batch_size);
    extract.workers = options.loader_workers;
    extract.channels_last = options.channels_last;
  extract.normalization = options.normalization;
    BatchLoader extract_loader(extract);
    std::tie(train_features, train_labels) = extract_features(model, extract_loader, options, cancelled);
    std::tie(val_features, val_labels) = extract_features(model, val_loader, options, cancelled);
    say("computed backbone features once (" + std::to_string(train_features.size(0) + val_features.size(0)) +
        " images, " + std::to_string(seconds_since(start)) + " s): the head trains on cached features");
  }
  const std::int64_t train_samples = use_features ? train_features.size(0) : train_loader->samples();
  if (train_samples == 0) throw std::runtime_error("the train split is empty");
  const bool drop_last_features = tail_too_small(train_samples, options.batch_size, ranks) && train_samples > options.batch_size;
  const std::int64_t usable_features = train_samples - (drop_last_features ? train_samples % options.batch_size : 0);
  const std::int64_t iterations_per_epoch = use_features ? (usable_features + options.batch_size - 1) / options.batch_size
                                                         : train_loader->batches_per_epoch();

  ScheduleSpec schedule = options.schedule;
  schedule.iterations_per_epoch = iterations_per_epoch;
  schedule.epochs = options.epochs;
  OptimizerSetup setup = make_optimizer(model, options.trainable, options.optimizer);
  std::vector<torch::Tensor> trainable;
  for (const auto& p : model.parameters()) {
    if (p.requires_grad()) trainable.push_back(p);
  }
  const torch::Tensor class_weights =
      options.balanced_class_weights ? balanced_weights(data_dir, classes).to(options.device) : torch::Tensor();
  EarlyStopping stopper(options.early_stopping);
  LossScaler scaler(options.mixed_precision == Precision::Float16);

  TrainResult result;
  result.used_feature_cache = use_features;
  result.groups = setup.groups;
  std::optional<weights::StateDict> best;
  std::int64_t first_epoch = 0;
  bool stopped = false;
  std::optional<Checkpoint> checkpoint = latest_checkpoint(resume_dir);
  if (checkpoint) {
    restore_checkpoint(*checkpoint, model, *setup.optimizer);
    best = checkpoint_extra(*checkpoint, "best");
    for (const auto& row : checkpoint->state.at("history")) result.history.push_back(EpochStats::from_json(row));
    stopper.restore(checkpoint->state.at("early_stopping"));
    stopped = checkpoint->state.value("stopped_early", false);
    first_epoch = checkpoint->epoch;
    result.resumed_from_epoch = first_epoch;
    say("resumed from the checkpoint of epoch " + std::to_string(first_epoch));
  }
  if (collective) {
    // All ranks must start from the same epoch: equal values have n * sum(e^2) == sum(e)^2.
    const double e = static_cast<double>(first_epoch);
    const std::vector<double> sums = sum_over_ranks({e, e * e}, *collective);
    if (static_cast<double>(ranks) * sums[1] != sums[0] * sums[0]) {
      throw std::runtime_error("the data-parallel ranks found different checkpoints (this rank: epoch " +
                               std::to_string(first_epoch) + "); every host needs its own copy of the resume "
                               "folder: keep one state dir per host, or run `petal gc` and start again");
    }
    broadcast_module_state(model, *collective);
    say("data-parallel: rank " + std::to_string(rank) + " of " + std::to_string(ranks) + " (" + collective->backend() +
        "), " + std::to_string(options.batch_size) + " images per global batch");
  }
  // The weight average starts from the (broadcast) initial weights, or continues a checkpoint's.
  std::optional<WeightAverage> average;
  if (options.ema_decay > 0) {
    average.emplace(model, options.ema_decay);
    std::optional<weights::StateDict> saved = checkpoint ? checkpoint_extra(*checkpoint, "average") : std::nullopt;
    if (saved) average->restore(*saved, checkpoint->state.value("average_updates", std::int64_t{0}));
    say("weight average: decay " + std::to_string(options.ema_decay) +
        "; validation, the best epoch and the saved model use the averaged weights");
  }

  for (std::int64_t epoch = first_epoch; epoch < options.epochs && !stopped; ++epoch) {
    seed_epoch(options.seed, epoch);
    const auto epoch_start = Clock::now();
    EpochStats stats;
    stats.epoch = epoch + 1;

    // ---- training ----
    set_train_mode(model, options.trainable);
    PhaseTotals train_totals(classes);
    std::int64_t iteration = epoch * iterations_per_epoch;
    const auto train_start = Clock::now();
    // `global_count`: the samples of this batch over all ranks (this rank holds labels.size(0)).
    const auto step = [&](const torch::Tensor& input, const torch::Tensor& labels, bool input_is_features,
                          std::int64_t global_count) {
      if (cancelled && cancelled()) throw StageCancelled();
      const double lr = learning_rate(schedule, iteration);
      setup.set_learning_rate(lr);
      if (const std::optional<double> momentum = scheduled_momentum(schedule, iteration)) setup.set_momentum(*momentum);
      stats.lr = lr;
      std::optional<MixedBatch> mixed;
      torch::Tensor x = input;
      if (mixing) {
        mixed = mix_batch(input, labels.cpu(), classes, options.mix, options.seed, iteration);
        x = mixed->images;
      }
      torch::Tensor logits, auxiliary_logits;
      {
        const AutocastScope autocast(options.mixed_precision);
        if (input_is_features) {
          logits = model.classify(x);
        } else if (head_only) {
          torch::Tensor features;
          {
            torch::NoGradGuard no_grad;
            features = model.features(x);
          }
          logits = model.classify(features);
        } else {
          std::tie(logits, auxiliary_logits) = model.forward_with_auxiliary(x);
        }
      }
      // The loss in float32 (a no-op without autocast).
      logits = logits.to(torch::kFloat32);
      if (auxiliary_logits.defined()) auxiliary_logits = auxiliary_logits.to(torch::kFloat32);
      torch::Tensor loss =
          training_loss(logits, mixed ? &*mixed : nullptr, labels, class_weights, options.label_smoothing);
      if (auxiliary_logits.defined()) {
        // inception_v3's auxiliary classifier, weighted as in torchvision's reference training recipe.
        loss = loss + kAuxiliaryLossWeight * training_loss(auxiliary_logits, mixed ? &*mixed : nullptr, labels,
                                                           class_weights, options.label_smoothing);
      }
      const double loss_value = loss.item<double>();
      if (!std::isfinite(loss_value)) {
        throw std::runtime_error("training diverged at epoch " + std::to_string(epoch + 1) + " (loss " +
                                 std::to_string(loss_value) + " at lr " + std::to_string(lr) +
                                 "); lower lr or max_lr, or set grad_clip_norm");
      }
      setup.optimizer->zero_grad();
      scaler.scale(loss).backward();
      if (collective) {
        all_reduce_gradients(trainable, static_cast<double>(labels.size(0)) / static_cast<double>(global_count),
                             *collective);
      }
      if (scaler.unscale(trainable)) {
        if (options.grad_clip_norm > 0) torch::nn::utils::clip_grad_norm_(trainable, options.grad_clip_norm);
        setup.optimizer->step();
        if (average) average->update();
      }
      train_totals.add(loss_value, logits.detach(), labels);
      ++iteration;
    };
    if (use_features) {
      torch::Generator generator = at::detail::createCPUGenerator(options.seed * 1000003 + static_cast<std::uint64_t>(epoch));
      const torch::Tensor order = torch::randperm(train_samples, generator, torch::kLong).to(options.device);
      for (std::int64_t begin = 0; begin < usable_features; begin += options.batch_size) {
        const std::int64_t count = std::min(usable_features, begin + options.batch_size) - begin;
        const std::int64_t first = begin + count * rank / ranks;
        const std::int64_t last = begin + count * (rank + 1) / ranks;
        const torch::Tensor rows = order.slice(0, first, last);
        step(train_features.index_select(0, rows), train_labels.index_select(0, rows), true, count);
      }
    } else {
      train_loader->start_epoch(epoch);
      while (auto batch = train_loader->next()) {
        torch::Tensor images = batch->images.to(options.device, /*non_blocking=*/true);
        step(images, batch->labels.to(options.device), false, batch->global_count);
      }
    }
    if (collective) {
      average_buffers(model, *collective);
      merge_over_ranks(train_totals, collective);
    }
    const double train_seconds = seconds_since(train_start);
    stats.train_loss = train_totals.loss();
    stats.train_accuracy = train_totals.confusion.accuracy();
    stats.train_f1 = train_totals.confusion.macro_f1();
    stats.images_per_second = static_cast<double>(train_totals.samples) / std::max(1e-9, train_seconds);

    // ---- validation; the best epoch's weights are those validated (the average, when kept) ----
    {
      const WeightAverage::Swap averaged(average ? &*average : nullptr);
      const PhaseTotals val_totals = validate(model, val_features, val_labels, val_loader, options, cancelled);
      stats.val_loss = val_totals.loss();
      stats.val_accuracy = val_totals.confusion.accuracy();
      stats.val_f1 = val_totals.confusion.macro_f1();
      stats.seconds = seconds_since(epoch_start);
      result.history.push_back(stats);
      const std::string& monitor = options.early_stopping.metric;
      const double monitored =
          monitor == "val_accuracy" ? stats.val_accuracy : monitor == "val_f1" ? stats.val_f1 : stats.val_loss;
      if (stopper.observe(stats.epoch, monitored) && options.restore_best) best = cpu_copy(model);
    }
    stopped = stopper.should_stop() && stats.epoch < options.epochs;

    char line[320];
    std::snprintf(line, sizeof line,
                  "epoch %lld/%lld  train loss %.4f acc %.4f f1 %.4f | val loss %.4f acc %.4f f1 %.4f | lr %.3g | "
                  "%.1f s, %.1f img/s%s",
                  static_cast<long long>(stats.epoch), static_cast<long long>(options.epochs), stats.train_loss,
                  stats.train_accuracy, stats.train_f1, stats.val_loss, stats.val_accuracy, stats.val_f1, stats.lr,
                  stats.seconds, stats.images_per_second, stopped ? "  (early stop)" : "");
    say(line);

    if (!resume_dir.empty() && options.writes_checkpoints) {
      json history = json::array();
      for (const auto& row : result.history) history.push_back(row.to_json());
      const json state = {{"history", history},
                          {"early_stopping", stopper.state()},
                          {"stopped_early", stopped},
                          {"average_updates", average ? average->updates() : 0}};
      fs::create_directories(resume_dir);
      const std::optional<weights::StateDict> averaged = average ? std::optional(average->state()) : std::nullopt;
      save_checkpoint(resume_dir, stats.epoch, model, *setup.optimizer,
                      {{"best", best ? &*best : nullptr}, {"average", averaged ? &*averaged : nullptr}}, state);
    }
  }

  for (const auto& stats : result.history) {
    const json row = stats.to_json();
    for (const auto& [name, value] : row.items()) {
      if (name != "epoch") report.metric(name, value.get<double>(), stats.epoch);
    }
  }
  result.stopped_early = stopped;
  result.best_epoch = stopper.has_best() ? stopper.best_epoch() : static_cast<std::int64_t>(result.history.size());
  if (options.restore_best && best) {
    weights::load_state_dict(model, *best, {}, "the best epoch's weights");
  } else if (average) {
    weights::load_state_dict(model, average->state(), {}, "the weight average");
  }
  return result;
}

}  // namespace petal::train
