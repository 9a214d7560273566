#pragma once
#include <string>
#include <vector>

#include "stages/augment/augment_policy.h"

namespace petal::augment {

// The built-in policies light, medium and deep, written in TOML (policy_presets.cpp) and compiled
// into petal's core. Only the core parses them: it hands the resolved policies to the workers as
// JSON, so the workers need no TOML parser.

const std::string& presets_toml();               // the TOML text (its hash is part of the stage version)
const std::vector<std::string>& policy_names();  // "none", "light", "medium", "deep"

// A preset by name; throws std::invalid_argument for an unknown name.
Policy preset_policy(const std::string& name);

// Applies overrides of the form "op.field=value" (field: probability or magnitude), in order.
// Throws std::invalid_argument naming the entry, op and field, e.g.
//   entry 2 "rotat.probability=0.3": unknown op 'rotat' (did you mean 'rotate'?); ops are: crop, ...
void apply_overrides(Policy& policy, const std::vector<std::string>& overrides);

// Every complaint apply_overrides would raise, one per invalid entry (empty when all are valid),
// so that a user sees all mistakes at once.
std::vector<std::string> override_errors(const std::vector<std::string>& overrides);

// preset_policy(name) with the overrides applied.
Policy resolve_policy(const std::string& name, const std::vector<std::string>& overrides);

}  // namespace petal::augment
