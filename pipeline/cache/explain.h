#pragma once
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace petal {

// Why a stage's key differs from the one it had before, one line per changed ingredient, e.g.
//   "parameter train.epochs changed: 10 -> 20"
//   "input 'split' changed: its key went 3f2a9c1d -> 8b7e6a5f"
//   "external input download.path content changed: 1c2d3e4f -> 5a6b7c8d"
// `stage` prefixes parameter names. Empty when the ingredients are equal.
std::vector<std::string> explain_key_change(const std::string& stage, const nlohmann::json& before,
                                            const nlohmann::json& after);

std::string short_key(const std::string& key);  // first 8 hex digits

}  // namespace petal
