#pragma once
// Champion/challenger gating, as a pure decision (no server): the register stage's rule.
#include <optional>
#include <string>

namespace petal {

struct PromotionDecision {
  bool promote = false;  // true: the candidate becomes `champion`; false: it gets `challenger`
  std::string reason;    // one sentence, e.g. "test_f1 0.9132 beats champion v3's 0.9010 by more than 0.005"
};

// The candidate is promoted when there is no champion, or when its metric beats the champion's by
// strictly more than `margin` in the better direction. A tie within the margin keeps the champion.
// A champion without a recorded value is treated as beaten (it cannot be compared); a candidate
// whose value is missing (NaN) is never promoted over an existing champion.
PromotionDecision decide_promotion(const std::string& metric, double candidate, const std::string& champion_version,
                                   std::optional<double> champion_value, bool higher_is_better, double margin);

}  // namespace petal
