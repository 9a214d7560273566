// Accuracy, precision, recall and F1 from a confusion matrix, against hand-computed values.
#include <doctest/doctest.h>

#include <stdexcept>

#include "stages/train/classification_metrics.h"

namespace petal {
namespace {

TEST_CASE("classification metrics: a three-class matrix computed by hand") {
  // truth \ predicted:  0  1  2
  //        0            3  1  0
  //        1            0  2  2
  //        2            1  0  1
  train::ConfusionMatrix m(3);
  const int cells[3][3] = {{3, 1, 0}, {0, 2, 2}, {1, 0, 1}};
  for (int t = 0; t < 3; ++t) {
    for (int p = 0; p < 3; ++p) {
      for (int k = 0; k < cells[t][p]; ++k) m.add(t, p);
    }
  }
  CHECK(m.total() == 10);
  CHECK(m.accuracy() == doctest::Approx(0.6));
  CHECK(m.precision(0) == doctest::Approx(0.75));
  CHECK(m.recall(1) == doctest::Approx(0.5));
  CHECK(m.precision(2) == doctest::Approx(1.0 / 3));
  const double f0 = 2 * 0.75 * 0.75 / 1.5, f1 = 2 * (2.0 / 3) * 0.5 / (2.0 / 3 + 0.5), f2 = 2 * (1.0 / 3) * 0.5 / (1.0 / 3 + 0.5);
  CHECK(m.f1(0) == doctest::Approx(f0));
  CHECK(m.macro_f1() == doctest::Approx((f0 + f1 + f2) / 3));
  CHECK(m.weighted_f1() == doctest::Approx((4 * f0 + 4 * f1 + 2 * f2) / 10));
}

TEST_CASE("classification metrics: empty classes and bad indices") {
  train::ConfusionMatrix m(4);
  CHECK(m.accuracy() == 0);
  m.add(0, 0);
  m.add(1, 1);
  CHECK(m.macro_f1() == doctest::Approx(1.0));  // classes 2 and 3 never seen: not averaged in
  CHECK(m.recall(3) == 0);
  CHECK_THROWS_WITH_AS(m.add(4, 0), "class index out of range: truth 4, predicted 0 (classes: 4)", std::out_of_range);
}

}  // namespace
}  // namespace petal
