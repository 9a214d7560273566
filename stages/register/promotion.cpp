#include "stages/register/promotion.h"

#include <cmath>
#include <cstdio>

namespace petal {

namespace {
std::string number(double value) {
  char text[32];
  std::snprintf(text, sizeof text, "%.4f", value);
  return text;
}
}  // namespace

PromotionDecision decide_promotion(const std::string& metric, double candidate, const std::string& champion_version,
                                   std::optional<double> champion_value, bool higher_is_better, double margin) {
  if (champion_version.empty()) return {true, "there was no champion"};
  const std::string champion = "champion v" + champion_version;
  if (std::isnan(candidate)) return {false, "the new model has no " + metric + " to compare with " + champion};
  if (!champion_value || std::isnan(*champion_value)) {
    return {true, champion + " has no recorded " + metric + " to compare with"};
  }
  const double gain = higher_is_better ? candidate - *champion_value : *champion_value - candidate;
  const std::string values = metric + " " + number(candidate) + " vs " + champion + "'s " + number(*champion_value);
  if (gain > margin) return {true, values + ": better by more than the margin " + number(margin)};
  if (gain > 0) return {false, values + ": better, but not by more than the margin " + number(margin)};
  if (gain == 0) return {false, values + ": a tie"};
  return {false, values + ": not better"};
}

}  // namespace petal
