// The champion/challenger rule of the register stage (stages/register/promotion.h).
#include <doctest/doctest.h>

#include <cmath>

#include "stages/register/promotion.h"

using namespace petal;

TEST_CASE("promotion: no champion, better beyond the margin, tie within the margin, worse") {
  CHECK(decide_promotion("test_f1", 0.5, "", std::nullopt, true, 0.01).promote);
  const auto better = decide_promotion("test_f1", 0.92, "3", 0.90, true, 0.01);
  CHECK(better.promote);
  CHECK(better.reason == "test_f1 0.9200 vs champion v3's 0.9000: better by more than the margin 0.0100");
  const auto within = decide_promotion("test_f1", 0.905, "3", 0.90, true, 0.01);
  CHECK_FALSE(within.promote);
  CHECK(within.reason.find("not by more than the margin") != std::string::npos);
  CHECK_FALSE(decide_promotion("test_f1", 0.90, "3", 0.90, true, 0.0).promote);  // an exact tie keeps the champion
  CHECK_FALSE(decide_promotion("test_f1", 0.80, "3", 0.90, true, 0.0).promote);
}

TEST_CASE("promotion: lower-is-better metrics, missing values") {
  CHECK(decide_promotion("test_log_loss", 0.20, "1", 0.30, false, 0.05).promote);
  CHECK_FALSE(decide_promotion("test_log_loss", 0.28, "1", 0.30, false, 0.05).promote);
  CHECK_FALSE(decide_promotion("test_log_loss", 0.40, "1", 0.30, false, 0.0).promote);
  CHECK(decide_promotion("test_f1", 0.5, "2", std::nullopt, true, 0.0).promote);
  CHECK_FALSE(decide_promotion("test_f1", std::nan(""), "2", 0.5, true, 0.0).promote);
}
