#pragma once
// The parameters the train and finetune stages share (the finetune stage adds its own), and their
// cross-parameter checks. Kept apart from the implementation so the core validates experiment
// files without LibTorch.
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "pipeline/config/param_spec.h"

namespace petal {

enum class TrainPhase { Train, Finetune };

std::vector<ParamSpec> train_param_specs(TrainPhase phase);
std::vector<std::pair<std::string, std::string>> check_train_params(const nlohmann::json& params, TrainPhase phase);

}  // namespace petal
