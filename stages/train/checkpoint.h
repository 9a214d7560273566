#pragma once
// Epoch checkpoints in a stage's resume folder:
//   <resume_dir>/epoch-<N>/{model.pt, optimizer.pt, state.json, <extra>.pt ...}
// where the extras are named weight sets kept beside the model (best.pt: the best epoch's weights;
// average.pt: the weight average).
// A checkpoint is written into epoch-<N>.partial, fsync'd, and renamed into place, so a folder
// named epoch-<N> is always complete; older checkpoints are removed after the rename.
#include <torch/nn/module.h>
#include <torch/optim/optimizer.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "stages/train/weights/state_dict_file.h"

namespace petal::train {

struct Checkpoint {
  std::int64_t epoch = 0;      // epochs completed
  nlohmann::json state;        // the trainer's own state (history, early stopping, ...)
  std::filesystem::path dir;
};

// Named weight sets saved with a checkpoint; a null pointer is skipped.
using CheckpointExtras = std::vector<std::pair<std::string, const weights::StateDict*>>;

void save_checkpoint(const std::filesystem::path& resume_dir, std::int64_t epoch, const torch::nn::Module& model,
                     const torch::optim::Optimizer& optimizer, const CheckpointExtras& extras,
                     const nlohmann::json& state);

// The newest complete checkpoint, or nullopt. Partial folders of a killed save are removed.
std::optional<Checkpoint> latest_checkpoint(const std::filesystem::path& resume_dir);

// Restores the model's weights and the optimizer's state from `checkpoint`.
void restore_checkpoint(const Checkpoint& checkpoint, torch::nn::Module& model, torch::optim::Optimizer& optimizer);

// The checkpoint's extra weight set `name` ("best", "average"), or nullopt when it was not saved.
std::optional<weights::StateDict> checkpoint_extra(const Checkpoint& checkpoint, const std::string& name);

}  // namespace petal::train
