#pragma once
// The training loop shared by the train and finetune stages: epochs over the augment stage's
// image cache, validation after each epoch, early stopping, and an epoch checkpoint committed to
// the stage's resume folder so a killed run continues where it stopped.
#include <torch/types.h>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "pipeline/dag/stage_kind.h"
#include "stages/train/batch_mix.h"
#include "stages/train/distributed/collective.h"
#include "stages/train/early_stopping.h"
#include "stages/train/mixed_precision.h"
#include "stages/augment/normalize.h"
#include "stages/train/lr_schedule.h"
#include "stages/train/models/classifier.h"
#include "stages/train/optim/optimizer_setup.h"

namespace petal::train {

struct TrainerOptions {
  std::int64_t epochs = 1;
  std::int64_t batch_size = 32;
  OptimizerSpec optimizer;
  TrainableSpec trainable;            // first_trained_block = blocks().size(): head only
  ScheduleSpec schedule;              // iterations_per_epoch and epochs are filled in by the trainer
  double label_smoothing = 0;
  bool balanced_class_weights = false;
  MixOptions mix;                     // both alphas 0: no mixing
  double grad_clip_norm = 0;
  // Exponential moving average of the weights (weight_average.h); 0 = off. With it, validation,
  // early stopping, the best epoch and the returned model all use the averaged weights.
  double ema_decay = 0;
  bool augment = true;
  bool cache_features = true;         // frozen backbone + no augmentation + no mixing: train on features
  EarlyStoppingSpec early_stopping;
  bool restore_best = true;
  std::uint64_t seed = 0;
  int loader_workers = 1;
  torch::Device device = torch::kCPU;
  bool channels_last = false;
  augment::Normalization normalization = augment::Normalization::imagenet();  // of every loader's images
  Precision mixed_precision = Precision::Float32;  // CUDA autocast; Float16 adds dynamic loss scaling
  // Data parallelism (distributed/data_parallel.h): null for one process. Each rank trains on its
  // share of every global batch of `batch_size`; metrics are merged over ranks, so every rank
  // reports the same numbers.
  Collective* collective = nullptr;
  bool writes_checkpoints = true;     // one process per host writes the resume folder's checkpoints
};

struct EpochStats {
  std::int64_t epoch = 0;             // 1-based
  double train_loss = 0, train_accuracy = 0, train_f1 = 0;
  double val_loss = 0, val_accuracy = 0, val_f1 = 0;
  double lr = 0;                      // the base rate at the epoch's last step
  double seconds = 0;
  double images_per_second = 0;       // training images per second of the training phase
  nlohmann::json to_json() const;
  static EpochStats from_json(const nlohmann::json& json);
};

struct TrainResult {
  std::vector<EpochStats> history;    // every epoch run, including those before a resume
  std::int64_t best_epoch = 0;        // 1-based; the epoch whose weights the model holds if restore_best
  bool stopped_early = false;
  std::int64_t resumed_from_epoch = 0;  // 0: started fresh
  bool used_feature_cache = false;
  std::vector<ParamGroupInfo> groups;
};

struct SplitScore {
  std::int64_t samples = 0;
  double loss = 0, accuracy = 0, macro_f1 = 0, weighted_f1 = 0;
};

// Evaluates `model` (eval mode, no augmentation, plain cross-entropy) on a split of <data_dir>'s
// image cache; samples = 0 when the split is empty.
SplitScore evaluate_split(models::ClassifierImpl& model, const std::filesystem::path& data_dir, const std::string& split,
                          const TrainerOptions& options, const std::function<bool()>& cancelled);

// Trains `model` (already on options.device, initial weights loaded) on <data_dir>'s train split,
// validating on its val split. Per-epoch metrics go to `report` as series (step = epoch) and lines
// to `log`. Checkpoints go to `resume_dir` (none if empty). Throws StageCancelled when `cancelled`.
TrainResult train_model(models::ClassifierImpl& model, const std::filesystem::path& data_dir, const TrainerOptions& options,
                        const std::filesystem::path& resume_dir, StageReport& report,
                        const std::function<bool()>& cancelled, const std::function<void(const std::string&)>& log);

}  // namespace petal::train
