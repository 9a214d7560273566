// Evaluation metrics from labels and probabilities, against values computed by hand (never by the
// code under test), and the confusion-matrix CSV against exact expected text.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <stdexcept>

#include "stages/evaluate/evaluation_metrics.h"
#include "support/test_support.h"

namespace petal {
namespace {

using evaluate::evaluate_predictions;

// Three classes, ten samples. Columns are P(daisy), P(rose), P(tulip); "->" is the prediction.
//   #  true   probabilities          ->     p_true
//   1  daisy  0.70  0.20  0.10       daisy  0.70
//   2  daisy  0.50  0.40  0.10       daisy  0.50
//   3  daisy  0.20  0.60  0.20       rose   0.20
//   4  daisy  0.80  0.10  0.10       daisy  0.80
//   5  rose   0.10  0.80  0.10       rose   0.80
//   6  rose   0.30  0.30  0.40       tulip  0.30
//   7  rose   0.25  0.50  0.25       rose   0.50
//   8  tulip  0.40  0.40  0.20       daisy  0.20   (tie daisy/rose: lowest index wins)
//   9  tulip  0.10  0.20  0.70       tulip  0.70
//  10  tulip  0.45  0.10  0.45       daisy  0.45   (tie daisy/tulip: lowest index wins, a miss)
//
// Confusion matrix (rows true, columns predicted):
//            daisy rose tulip | support
//   daisy      3    1    0    |   4
//   rose       0    2    1    |   3
//   tulip      2    0    1    |   3
//   predicted  5    3    2
// accuracy  = (3 + 2 + 1) / 10 = 0.6
// precision = 3/5, 2/3, 1/2          recall = 3/4, 2/3, 1/3
// F1 daisy  = 2 * 0.6 * 0.75 / 1.35 = 2/3
// F1 rose   = 2/3 (precision = recall)
// F1 tulip  = 2 * (1/2)(1/3) / (5/6) = 2/5
// macro F1        = (2/3 + 2/3 + 2/5) / 3 = 26/45
// weighted F1     = (4 * 2/3 + 3 * 2/3 + 3 * 2/5) / 10 = 88/150
// macro precision = (3/5 + 2/3 + 1/2) / 3 = 53/90
// macro recall    = (3/4 + 2/3 + 1/3) / 3 = 7/12
// log loss = -ln(0.7 * 0.5 * 0.2 * 0.8 * 0.8 * 0.3 * 0.5 * 0.2 * 0.7 * 0.45) / 10
//          = -ln(0.00042336) / 10 = 0.776729
const std::vector<std::string> kFlowers = {"daisy", "rose", "tulip"};
const std::vector<std::int64_t> kLabels = {0, 0, 0, 0, 1, 1, 1, 2, 2, 2};
const std::vector<float> kProbabilities = {
    0.70f, 0.20f, 0.10f,  //
    0.50f, 0.40f, 0.10f,  //
    0.20f, 0.60f, 0.20f,  //
    0.80f, 0.10f, 0.10f,  //
    0.10f, 0.80f, 0.10f,  //
    0.30f, 0.30f, 0.40f,  //
    0.25f, 0.50f, 0.25f,  //
    0.40f, 0.40f, 0.20f,  //
    0.10f, 0.20f, 0.70f,  //
    0.45f, 0.10f, 0.45f,  //
};

TEST_CASE("evaluation metrics: a three-class example computed by hand") {
  const evaluate::EvaluationResult r = evaluate_predictions(kLabels, kProbabilities, kFlowers);
  CHECK(r.samples == 10);
  const int expected[3][3] = {{3, 1, 0}, {0, 2, 1}, {2, 0, 1}};
  for (int t = 0; t < 3; ++t) {
    for (int p = 0; p < 3; ++p) CHECK(r.confusion.count(t, p) == expected[t][p]);
  }
  CHECK(r.accuracy == doctest::Approx(0.6));
  CHECK_FALSE(r.top_k_accuracy.has_value());  // 3 classes: top-5 would always be 1
  REQUIRE(r.per_class.size() == 3);
  CHECK(r.per_class[0].name == "daisy");
  CHECK(r.per_class[0].precision == doctest::Approx(3.0 / 5));
  CHECK(r.per_class[1].precision == doctest::Approx(2.0 / 3));
  CHECK(r.per_class[2].precision == doctest::Approx(1.0 / 2));
  CHECK(r.per_class[0].recall == doctest::Approx(3.0 / 4));
  CHECK(r.per_class[1].recall == doctest::Approx(2.0 / 3));
  CHECK(r.per_class[2].recall == doctest::Approx(1.0 / 3));
  CHECK(r.per_class[0].f1 == doctest::Approx(2.0 / 3));
  CHECK(r.per_class[1].f1 == doctest::Approx(2.0 / 3));
  CHECK(r.per_class[2].f1 == doctest::Approx(2.0 / 5));
  CHECK(r.per_class[0].support == 4);
  CHECK(r.per_class[1].support == 3);
  CHECK(r.per_class[2].support == 3);
  CHECK(r.macro_f1 == doctest::Approx(26.0 / 45));
  CHECK(r.weighted_f1 == doctest::Approx(88.0 / 150));
  CHECK(r.macro_precision == doctest::Approx(53.0 / 90));
  CHECK(r.macro_recall == doctest::Approx(7.0 / 12));
  CHECK(r.log_loss == doctest::Approx(0.776729).epsilon(1e-5));
}

TEST_CASE("evaluation metrics: the flat MLflow metrics and the JSON report") {
  const evaluate::EvaluationResult r = evaluate_predictions(kLabels, kProbabilities, kFlowers);
  const auto metrics = r.metrics("test");
  const std::vector<std::pair<std::string, double>> expected = {
      {"test_accuracy", 0.6},          {"test_f1", 26.0 / 45},      {"test_weighted_f1", 88.0 / 150},
      {"test_precision", 53.0 / 90},   {"test_recall", 7.0 / 12},   {"test_log_loss", 0.776729},
      {"test_samples", 10},            {"test_f1_daisy", 2.0 / 3},  {"test_f1_rose", 2.0 / 3},
      {"test_f1_tulip", 2.0 / 5}};
  REQUIRE(metrics.size() == expected.size());
  for (std::size_t i = 0; i < expected.size(); ++i) {
    CHECK(metrics[i].first == expected[i].first);
    CHECK(metrics[i].second == doctest::Approx(expected[i].second).epsilon(1e-5));
  }
  CHECK(r.metrics("").front().first == "accuracy");

  const nlohmann::json report = r.to_json();
  CHECK(report.at("samples") == 10);
  CHECK(report.at("accuracy").get<double>() == doctest::Approx(0.6));
  CHECK_FALSE(report.contains("top5_accuracy"));
  CHECK(report.at("per_class").at("rose").at("support") == 3);
  CHECK(report.at("per_class").at("tulip").at("f1").get<double>() == doctest::Approx(0.4));
  CHECK(report.at("confusion_matrix").at("classes") == nlohmann::json(kFlowers));
  CHECK(report.at("confusion_matrix").at("counts") == nlohmann::json::parse("[[3,1,0],[0,2,1],[2,0,1]]"));
}

TEST_CASE("evaluation metrics: top-5 accuracy with seven classes, ties ranked by lower index") {
  const std::vector<std::string> classes = {"c0", "c1", "c2", "c3", "c4", "c5", "c6"};
  const std::vector<float> ranked = {0.30f, 0.20f, 0.15f, 0.10f, 0.10f, 0.10f, 0.05f};
  const std::vector<float> confident = {0.40f, 0.10f, 0.10f, 0.10f, 0.10f, 0.10f, 0.10f};
  std::vector<float> probabilities;
  for (const auto* row : {&confident, &ranked, &ranked, &ranked}) probabilities.insert(probabilities.end(), row->begin(), row->end());
  // Sample 0: true c0, ranked first (hit). Sample 1: true c6, 6 classes ahead (miss).
  // Sample 2: true c4, ahead are c0 c1 c2 and c3 (equal, lower index): rank 5 (hit).
  // Sample 3: true c5, ahead are c0..c4: rank 6 (miss). Top-5 = 2/4; every prediction is c0: accuracy 1/4.
  const std::vector<std::int64_t> labels = {0, 6, 4, 5};
  const evaluate::EvaluationResult r = evaluate_predictions(labels, probabilities, classes);
  REQUIRE(r.top_k_accuracy.has_value());
  CHECK(*r.top_k_accuracy == doctest::Approx(0.5));
  CHECK(r.accuracy == doctest::Approx(0.25));
  CHECK(r.metrics("val")[1] == std::pair<std::string, double>("val_top5_accuracy", 0.5));
  CHECK(r.to_json().at("top5_accuracy").get<double>() == doctest::Approx(0.5));

  // k = 3: sample 0 hit, sample 2 (rank 5) now a miss.
  const evaluate::EvaluationResult top3 = evaluate_predictions(labels, probabilities, classes, 3);
  CHECK(*top3.top_k_accuracy == doctest::Approx(0.25));
  CHECK(top3.metrics("test")[1].first == "test_top3_accuracy");

  // Exactly five classes: no top-5 value and no metric for it.
  const evaluate::EvaluationResult five = evaluate_predictions({0}, {0.2f, 0.2f, 0.2f, 0.2f, 0.2f}, {"a", "b", "c", "d", "e"});
  CHECK_FALSE(five.top_k_accuracy.has_value());
  for (const auto& [name, value] : five.metrics("test")) CHECK(name != "test_top5_accuracy");
}

TEST_CASE("evaluation metrics: argmax ties go to the lowest class index") {
  const float halves[] = {0.5f, 0.5f};
  const float late_tie[] = {0.2f, 0.4f, 0.4f};
  const float flat[] = {0.25f, 0.25f, 0.25f, 0.25f};
  const float last[] = {0.1f, 0.2f, 0.7f};
  CHECK(evaluate::predicted_class(halves, 2) == 0);
  CHECK(evaluate::predicted_class(late_tie, 3) == 1);
  CHECK(evaluate::predicted_class(flat, 4) == 0);
  CHECK(evaluate::predicted_class(last, 3) == 2);
}

TEST_CASE("evaluation metrics: log loss clips p_true at 1e-15 as scikit-learn does") {
  // Sample 0: p_true = 0 -> -ln(1e-15) = 15 ln 10 = 34.538776. Sample 1: p_true = 1 -> 0.
  const evaluate::EvaluationResult r = evaluate_predictions({1, 0}, {1.0f, 0.0f, 1.0f, 0.0f}, {"a", "b"});
  CHECK(r.log_loss == doctest::Approx(34.538776 / 2));
  CHECK(std::isfinite(r.log_loss));
}

TEST_CASE("evaluation metrics: class names become valid MLflow metric names") {
  CHECK(evaluate::metric_name_part("giant white arum-lily/1.0") == "giant white arum-lily/1.0");
  CHECK(evaluate::metric_name_part("rose (red), 'x'") == "rose _red__ _x_");
  CHECK(evaluate::metric_name_part("caf\xC3\xA9 cr\xC3\xA8me") == "caf_ cr_me");  // one '_' per UTF-8 character
  CHECK(evaluate::metric_name_part("a..b...c") == "a._b._.c");                     // MLflow rejects ".."
  // Two names that sanitise alike keep distinct keys.
  const evaluate::EvaluationResult r = evaluate_predictions({0, 1}, {1.0f, 0.0f, 0.0f, 1.0f}, {"a+b", "a_b"});
  const auto metrics = r.metrics("test");
  CHECK(metrics[metrics.size() - 2].first == "test_f1_a_b");
  CHECK(metrics[metrics.size() - 1].first == "test_f1_a_b_1");
}

TEST_CASE("evaluation metrics: confusion matrix CSV, raw and row-normalised, with quoted names") {
  test::TempDir dir;
  const evaluate::EvaluationResult r = evaluate_predictions(kLabels, kProbabilities, kFlowers);
  const std::vector<std::string> names = {"daisy", "rose, red", "tulip \"t\""};
  evaluate::write_confusion_csv(r.confusion, names, dir / "raw.csv", false);
  CHECK(test::read_file(dir / "raw.csv") ==
        "true\\predicted,daisy,\"rose, red\",\"tulip \"\"t\"\"\"\n"
        "daisy,3,1,0\n"
        "\"rose, red\",0,2,1\n"
        "\"tulip \"\"t\"\"\",2,0,1\n");
  evaluate::write_confusion_csv(r.confusion, names, dir / "normalized.csv", true);
  CHECK(test::read_file(dir / "normalized.csv") ==
        "true\\predicted,daisy,\"rose, red\",\"tulip \"\"t\"\"\"\n"
        "daisy,0.750000,0.250000,0.000000\n"
        "\"rose, red\",0.000000,0.666667,0.333333\n"
        "\"tulip \"\"t\"\"\",0.666667,0.000000,0.333333\n");

  // A class without samples (c) normalises to a row of zeros, not NaN.
  train::ConfusionMatrix sparse(3);
  sparse.add(0, 0);
  sparse.add(0, 0);
  sparse.add(0, 1);
  sparse.add(1, 2);
  evaluate::write_confusion_csv(sparse, {"a", "b", "c"}, dir / "sparse.csv", true);
  CHECK(test::read_file(dir / "sparse.csv") ==
        "true\\predicted,a,b,c\n"
        "a,0.666667,0.333333,0.000000\n"
        "b,0.000000,0.000000,1.000000\n"
        "c,0.000000,0.000000,0.000000\n");
  CHECK_THROWS_WITH_AS(evaluate::write_confusion_csv(sparse, {"a", "b"}, dir / "bad.csv", false),
                       "write_confusion_csv: 2 class names for a 3-class confusion matrix; pass one name per class",
                       std::invalid_argument);
}

TEST_CASE("evaluation metrics: bad input names the sample and what was expected") {
  const std::vector<std::string> abc = {"a", "b", "c"};
  CHECK_THROWS_WITH_AS(evaluate_predictions({0, 3}, std::vector<float>(6, 1.0f / 3), abc),
                       "sample 1 has label 3, expected a class index in [0, 3)", std::invalid_argument);
  CHECK_THROWS_WITH_AS(evaluate_predictions({-1}, std::vector<float>(3, 1.0f / 3), abc),
                       "sample 0 has label -1, expected a class index in [0, 3)", std::invalid_argument);
  CHECK_THROWS_WITH_AS(evaluate_predictions({0, 1}, std::vector<float>(5, 0.2f), abc),
                       "probabilities hold 5 values, expected 2 samples x 3 classes = 6 (row-major, one row per label)",
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(evaluate_predictions({0}, {0.5f, -0.5f, 1.0f}, abc),
                       "sample 0 has probability -0.500000 for class 1, expected a finite value >= 0 (softmax output)",
                       std::invalid_argument);
  CHECK_THROWS_AS(evaluate_predictions({0}, {std::numeric_limits<float>::quiet_NaN(), 0.5f, 0.5f}, abc),
                  std::invalid_argument);
  CHECK_THROWS_WITH_AS(evaluate_predictions({}, {}, abc),
                       "no samples to evaluate: the split is empty (skip it or give it samples)", std::invalid_argument);
  CHECK_THROWS_WITH_AS(evaluate_predictions({0}, {1.0f}, {}),
                       "no class names given: pass one name per class, in class-index order", std::invalid_argument);
}

}  // namespace
}  // namespace petal
