#pragma once
#include <map>
#include <nlohmann/json.hpp>
#include <string>

namespace petal {

struct StageNode;

// Everything that determines a stage's output, as canonical JSON:
//   {"kind", "version", "params", "inputs": {stage: key}, "external": {param: digest},
//    "env": {"petal": version[, "torch": version]}}
// nlohmann's objects are sorted maps and numbers are printed in shortest round-trip form, so the
// same meaning always serialises to the same bytes.
nlohmann::json stage_ingredients(const StageNode& node, const std::map<std::string, std::string>& input_keys,
                                 const std::map<std::string, std::string>& external_digests);

// SHA-256 of the versioned canonical serialisation. Changing the serialisation or the hash means
// bumping kKeyFormat, which invalidates every entry instead of misreading one.
std::string stage_key(const nlohmann::json& ingredients);

inline constexpr const char* kKeyFormat = "petal-stage-key/1";

}  // namespace petal
