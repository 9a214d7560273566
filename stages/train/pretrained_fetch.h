#pragma once
// Finding torchvision's published ImageNet weights on this machine, or downloading them once.
#include <filesystem>
#include <functional>
#include <string>

#include "stages/train/model_names.h"

namespace petal {

// Where downloaded weights are kept across runs and projects: $PETAL_WEIGHTS_DIR, else
// <download cache's parent>/weights (~/.cache/petal/weights).
std::filesystem::path weights_cache_dir();

// The local path of `weights`' file: an existing copy whose SHA-256 starts with the prefix in its
// name (petal's weights cache, then torch hub's checkpoints folder: $TORCH_HOME/hub/checkpoints or
// ~/.cache/torch/hub/checkpoints), else a download from `url_override` or the official URL through
// petal's download machinery (resumable, retried), checked the same way before it is kept.
// Throws PetalError naming the URL and the expected prefix on a mismatch.
std::filesystem::path fetch_pretrained(const PretrainedWeights& weights, const std::string& url_override,
                                       const std::function<void(const std::string&)>& log,
                                       const std::function<bool()>& cancelled);

}  // namespace petal
