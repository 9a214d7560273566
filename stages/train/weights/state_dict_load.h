#pragma once
// Copies a state dict into a module with a strict check, as torch's load_state_dict(strict=True),
// except for the prefixes the caller replaces by design (the classification head).
#include <torch/nn/module.h>

#include <string>
#include <vector>

#include "stages/train/weights/state_dict_file.h"

namespace petal::weights {

struct LoadOptions {
  std::vector<std::string> skip_prefixes;  // e.g. {"fc"}: keys "fc" or "fc.*" are neither loaded nor reported
  bool strict = true;                      // missing / unexpected keys or shape mismatches throw
};

struct LoadReport {
  std::vector<std::string> loaded;
  std::vector<std::string> skipped;     // matched skip_prefixes (present in the file)
  std::vector<std::string> missing;     // in the module, not in the file
  std::vector<std::string> unexpected;  // in the file, not in the module
  std::vector<std::string> mismatched;  // "name: file [1000, 512] vs model [5, 512]"
  bool ok() const { return missing.empty() && unexpected.empty() && mismatched.empty(); }
  std::string describe() const;  // a multi-line listing of the problems, each list capped with "... and N more"
};

// Renames keys of files in older layouts to the module's names. Formats: "torchvision" (no change),
// "torchvision-densenet-legacy" ("denselayer1.norm.1.weight" -> "denselayer1.norm1.weight", as
// torchvision's own densenet loader does), "torchvision-vit-legacy" (the ViT files published before
// torchvision's MLP block refactoring: "mlp.linear_1.weight" -> "mlp.0.weight", "mlp.linear_2" ->
// "mlp.3", as MLPBlock._load_from_state_dict does; files in the new layout pass unchanged).
StateDict rename_keys(StateDict state, const std::string& key_format);

// Copies every matching parameter and buffer (under torch::NoGradGuard). With strict set, throws
// StateDictError listing every problem (and copies nothing) unless the report is ok().
// `source` names the file in messages.
LoadReport load_state_dict(torch::nn::Module& module, const StateDict& state, const LoadOptions& options,
                           const std::string& source);

// The module's parameters and buffers as a state dict (names as torch's state_dict()).
StateDict module_state_dict(const torch::nn::Module& module);

}  // namespace petal::weights
