// The evaluate stage's report images: geometry, that they show what they should, and PNGs for a
// human to look at (also copied to /tmp/petal_charts/).
#include <doctest/doctest.h>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include <cmath>
#include <stdexcept>

#include "stages/evaluate/report_charts.h"
#include "support/test_support.h"

namespace petal {
namespace {

namespace fs = std::filesystem;

const std::vector<std::string> kFlowers5 = {"daisy", "dandelion", "rose", "sunflower", "tulip"};

// Writes `image` into `dir` and a copy into /tmp/petal_charts/ for a human to look at.
void save_for_review(const test::TempDir& dir, const std::string& name, const cv::Mat& image) {
  REQUIRE(cv::imwrite((dir / name).string(), image));
  std::error_code ignored;
  fs::create_directories("/tmp/petal_charts", ignored);
  cv::imwrite("/tmp/petal_charts/" + name, image);
}

int pixels_of(const cv::Mat& image, const cv::Scalar& bgr) {
  cv::Mat mask;
  cv::inRange(image, bgr, bgr, mask);
  return cv::countNonZero(mask);
}

// A 5-class matrix like a fine-tuned flowers5 model's: mostly diagonal, a few confusions.
train::ConfusionMatrix flowers_matrix() {
  const int cells[5][5] = {{104, 3, 2, 4, 1}, {2, 151, 0, 5, 0}, {1, 0, 101, 1, 15}, {3, 6, 0, 99, 2}, {0, 1, 12, 2, 133}};
  train::ConfusionMatrix m(5);
  for (int t = 0; t < 5; ++t) {
    for (int p = 0; p < 5; ++p) {
      for (int k = 0; k < cells[t][p]; ++k) m.add(t, p);
    }
  }
  return m;
}

// A smooth synthetic picture, uint8 RGB, different for each seed.
cv::Mat synthetic_rgb(int seed, int width, int height) {
  cv::Mat rgb(height, width, CV_8UC3);
  for (int y = 0; y < height; ++y) {
    for (int x = 0; x < width; ++x) {
      rgb.at<cv::Vec3b>(y, x) = cv::Vec3b(static_cast<uchar>((x * 255 / width + seed * 40) % 256),
                                          static_cast<uchar>(y * 255 / height), static_cast<uchar>((seed * 70) % 256));
    }
  }
  cv::circle(rgb, {width / 2, height / 2}, std::min(width, height) / 4, cv::Scalar(250, 220, 40), cv::FILLED);
  return rgb;
}

// A real flowers5 photo when the shared datasets are there (nicer to look at), else synthetic.
cv::Mat sample_photo(const std::string& flower, int seed) {
  const fs::path folder = fs::path(PETAL_SOURCE_DIR) / ".." / "shared" / "datasets" / "flowers5" / flower;
  std::error_code error;
  int skip = seed;
  for (fs::directory_iterator it(folder, error), end; !error && it != end; it.increment(error)) {
    if (skip-- > 0) continue;
    cv::Mat bgr = cv::imread(it->path().string(), cv::IMREAD_COLOR), rgb;
    if (bgr.empty()) break;
    cv::cvtColor(bgr, rgb, cv::COLOR_BGR2RGB);
    return rgb;
  }
  return synthetic_rgb(seed, 128, 96 + 8 * seed);
}

TEST_CASE("report charts: a 5-class confusion matrix, raw and normalised") {
  test::TempDir dir;
  const train::ConfusionMatrix m = flowers_matrix();
  const cv::Mat raw = evaluate::draw_confusion_matrix(m, kFlowers5, false, "confusion matrix, test split (counts)");
  const cv::Mat normalized = evaluate::draw_confusion_matrix(m, kFlowers5, true, "confusion matrix, test split (recall per row)");
  save_for_review(dir, "confusion_counts.png", raw);
  save_for_review(dir, "confusion_normalized.png", normalized);
  for (const cv::Mat* image : {&raw, &normalized}) {
    CHECK(image->type() == CV_8UC3);
    CHECK(image->cols >= 400);
    CHECK(image->cols <= 1200);
    CHECK(image->rows >= 400);
    CHECK(image->rows <= 1200);
  }
  // The largest count (151) is drawn in the darkest blue of the scale, empty cells in its white;
  // both fill most of a cell (the number in it takes a little).
  const cv::Scalar darkest(107, 48, 8), lightest(255, 251, 247);
  CHECK(pixels_of(raw, darkest) > 96 * 96 / 2);
  CHECK(pixels_of(raw, lightest) > 3 * 96 * 96 / 2);
  // Normalised, no row is 100% one cell: the darkest blue is only in the colour bar's top rows.
  CHECK(pixels_of(normalized, darkest) < pixels_of(raw, darkest));
  CHECK((raw.size() != normalized.size() || cv::norm(raw, normalized, cv::NORM_L1) > 0));
}

TEST_CASE("report charts: long class names are shortened and column labels rotated") {
  test::TempDir dir;
  const std::vector<std::string> names = {"giant white arum lily", "bishop of llandaff", "hard-leaved pocket orchid",
                                          "a remarkably long flower name that cannot possibly fit anywhere", "rose"};
  const cv::Mat image = evaluate::draw_confusion_matrix(flowers_matrix(), names, true, "long class names");
  save_for_review(dir, "confusion_long_names.png", image);
  CHECK(image.cols <= 1200);  // the longest name is cut with "...", not given its full width
  CHECK(image.rows <= 1200);
}

TEST_CASE("report charts: 102 classes still render") {
  test::TempDir dir;
  const std::vector<std::string> named = {"pink primrose", "hard-leaved pocket orchid", "canterbury bells", "sweet pea",
                                          "english marigold", "tiger lily", "moon orchid", "bird of paradise", "monkshood",
                                          "globe thistle", "snapdragon", "colt's foot", "king protea", "spear thistle"};
  std::vector<std::string> classes;
  for (int c = 0; c < 102; ++c) classes.push_back(c < static_cast<int>(named.size()) ? named[c] : "class " + std::to_string(c + 1));
  train::ConfusionMatrix m(102);
  for (int t = 0; t < 102; ++t) {
    for (int k = 0; k < 8; ++k) m.add(t, t);
    m.add(t, (t * 7 + 3) % 102);
  }
  const cv::Mat image = evaluate::draw_confusion_matrix(m, classes, true, "Oxford 102 flowers, test split");
  save_for_review(dir, "confusion_102.png", image);
  CHECK(image.cols >= 102 * 12);
  CHECK(image.cols <= 2000);
  CHECK(image.rows <= 2000);
  CHECK_THROWS_WITH_AS(evaluate::draw_confusion_matrix(m, {"a"}, false, "x"),
                       "draw_confusion_matrix: 1 class names for a 102-class confusion matrix; pass one name per class",
                       std::invalid_argument);
}

TEST_CASE("report charts: the gallery lays thumbnails out in a grid") {
  test::TempDir dir;
  // Five plain-coloured thumbnails; each one's colour shows where it was drawn.
  const std::vector<cv::Vec3b> colours_rgb = {{250, 0, 0}, {0, 250, 0}, {0, 0, 250}, {250, 250, 0}, {0, 250, 250}};
  std::vector<evaluate::GalleryItem> items;
  for (std::size_t i = 0; i < colours_rgb.size(); ++i) {
    items.push_back({cv::Mat(60 + 20 * static_cast<int>(i), 80, CV_8UC3, cv::Scalar(colours_rgb[i][0], colours_rgb[i][1], colours_rgb[i][2])),
                     "true: rose", "pred: tulip 0.87", cv::Scalar(60, 60, 200)});
  }
  const cv::Mat image = evaluate::draw_image_gallery(items, 2, "misclassified");
  std::vector<cv::Point2d> centres;
  for (const cv::Vec3b& rgb : colours_rgb) {
    cv::Mat mask;
    cv::inRange(image, cv::Scalar(rgb[2], rgb[1], rgb[0]), cv::Scalar(rgb[2], rgb[1], rgb[0]), mask);
    const cv::Moments moments = cv::moments(mask, true);
    REQUIRE(moments.m00 > 100);
    centres.emplace_back(moments.m10 / moments.m00, moments.m01 / moments.m00);
  }
  // Two columns, three rows, row by row, evenly spaced; thumbnails centred in equal tiles.
  CHECK(centres[0].x == doctest::Approx(centres[2].x).epsilon(0.01));
  CHECK(centres[2].x == doctest::Approx(centres[4].x).epsilon(0.01));
  CHECK(centres[1].x == doctest::Approx(centres[3].x).epsilon(0.01));
  CHECK(centres[1].x > centres[0].x + 160);
  CHECK(centres[0].y == doctest::Approx(centres[1].y).epsilon(0.01));
  CHECK(centres[2].y - centres[0].y == doctest::Approx(centres[4].y - centres[2].y).epsilon(0.01));
  CHECK(centres[2].y > centres[0].y + 160);
  // With 8 columns but 5 items the grid is one row of 5, narrower than 8 tiles would be.
  const cv::Mat one_row = evaluate::draw_image_gallery(items, 8, "misclassified");
  CHECK(one_row.rows < image.rows);
  CHECK(one_row.cols < 8 * 168);
  CHECK_THROWS_WITH_AS(evaluate::draw_image_gallery(items, 0, "x"), "draw_image_gallery: columns must be at least 1 (got 0)",
                       std::invalid_argument);

  // A gallery of photos as the evaluate stage makes it, for a human to look at.
  std::vector<evaluate::GalleryItem> photos;
  const char* mistakes[][3] = {{"rose", "tulip", "0.87"},      {"tulip", "rose", "0.64"},   {"daisy", "dandelion", "0.55"},
                               {"sunflower", "daisy", "0.51"}, {"dandelion", "sunflower", "0.93"}, {"rose", "tulip", "0.49"},
                               {"tulip", "rose", "0.71"}};
  int seed = 0;
  for (const auto& m : mistakes) {
    photos.push_back({sample_photo(m[0], seed++), std::string("true: ") + m[0], std::string("pred: ") + m[1] + " " + m[2],
                      cv::Scalar(60, 60, 200)});
  }
  save_for_review(dir, "gallery.png", evaluate::draw_image_gallery(photos, 4, "misclassified, test split (most confident first)"));
}

TEST_CASE("report charts: an empty gallery says so") {
  test::TempDir dir;
  const cv::Mat image = evaluate::draw_image_gallery({}, 4, "misclassified, test split");
  save_for_review(dir, "gallery_empty.png", image);
  CHECK(image.rows < 150);
  CHECK(image.cols < 700);
  CHECK(pixels_of(image, cv::Scalar(255, 255, 255)) < image.rows * image.cols);  // some text was drawn
}

TEST_CASE("report charts: round tick values") {
  using V = std::vector<double>;
  auto near = [](const V& a, const V& b) {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i) {
      if (std::abs(a[i] - b[i]) > 1e-12) return false;
    }
    return true;
  };
  CHECK(near(evaluate::nice_ticks(0, 1, 6), V{0, 0.2, 0.4, 0.6, 0.8, 1.0}));
  CHECK(near(evaluate::nice_ticks(0.37, 2.61, 6), V{0, 0.5, 1, 1.5, 2, 2.5, 3}));
  CHECK(near(evaluate::nice_ticks(1, 10, 7, true), V{0, 2, 4, 6, 8, 10}));
  CHECK(near(evaluate::nice_ticks(1, 3, 7, true), V{1, 2, 3}));  // never a step below 1 for epochs
  CHECK(near(evaluate::nice_ticks(0, 151, 6, true), V{0, 50, 100, 150, 200}));
  const V flat = evaluate::nice_ticks(3, 3, 6);
  CHECK(flat.front() <= 3);
  CHECK(flat.back() >= 3);
  CHECK(flat.size() >= 2);
}

TEST_CASE("report charts: training curves, three panels with train and val lines") {
  test::TempDir dir;
  const cv::Scalar train_bgr(180, 119, 31), val_bgr(14, 127, 255);  // matplotlib's blue and orange
  std::vector<double> epochs, train_loss, val_loss, train_acc, val_acc, train_f1, val_f1;
  for (int e = 1; e <= 12; ++e) {
    epochs.push_back(e);
    train_loss.push_back(1.6 * std::exp(-0.25 * e) + 0.1);
    val_loss.push_back(1.5 * std::exp(-0.2 * e) + 0.25 + 0.01 * e);
    train_acc.push_back(1 - 0.7 * std::exp(-0.3 * e));
    val_acc.push_back(0.95 - 0.65 * std::exp(-0.28 * e));
    train_f1.push_back(train_acc.back() - 0.02);
    val_f1.push_back(e == 5 ? std::nan("") : val_acc.back() - 0.03);  // a missing value is skipped
  }
  const std::vector<evaluate::CurvePanel> panels = {
      {"loss", {{"train", epochs, train_loss, train_bgr}, {"val", epochs, val_loss, val_bgr}}},
      {"accuracy", {{"train", epochs, train_acc, train_bgr}, {"val", epochs, val_acc, val_bgr}}, "epoch", 0.0, 1.0},
      {"macro F1", {{"train", epochs, train_f1, train_bgr}, {"val", epochs, val_f1, val_bgr}}, "epoch", 0.0, 1.0}};
  const cv::Mat image = evaluate::draw_training_curves(panels, "finetune: efficientnet_lite0 on flowers5");
  save_for_review(dir, "curves.png", image);
  CHECK(image.cols >= 3 * 400);
  CHECK(pixels_of(image, train_bgr) > 300);
  CHECK(pixels_of(image, val_bgr) > 300);

  // One epoch: a dot per series. Only NaN: an empty panel, no crash.
  const std::vector<evaluate::CurvePanel> single = {
      {"loss", {{"train", {1}, {0.8}, train_bgr}, {"val", {1}, {0.9}, val_bgr}}},
      {"accuracy", {{"train", {1}, {std::nan("")}, train_bgr}}}};
  const cv::Mat dot = evaluate::draw_training_curves(single, "one epoch");
  save_for_review(dir, "curves_one_epoch.png", dot);
  CHECK(pixels_of(dot, train_bgr) > 10);
  CHECK(pixels_of(dot, val_bgr) > 10);

  CHECK_THROWS_WITH_AS(evaluate::draw_training_curves({{"loss", {{"train", {1, 2}, {0.5}, train_bgr}}}}, "x"),
                       "draw_training_curves: series 'train' of panel 'loss' has 2 x values but 1 y values; give one y per x",
                       std::invalid_argument);
  CHECK_THROWS_AS(evaluate::draw_training_curves({}, "x"), std::invalid_argument);
}

TEST_CASE("report charts: heat-map overlays and labelled rows") {
  test::TempDir dir;
  const cv::Mat rgb = sample_photo("rose", 0);
  // A 7x7 map (a feature map's resolution), hot in the middle.
  cv::Mat heat(7, 7, CV_32F);
  for (int y = 0; y < 7; ++y) {
    for (int x = 0; x < 7; ++x) heat.at<float>(y, x) = static_cast<float>(std::exp(-((x - 3) * (x - 3) + (y - 3) * (y - 3)) / 4.0));
  }
  const cv::Mat original = evaluate::overlay_heatmap(rgb, heat, 0.0);
  cv::Mat expected_bgr;
  cv::cvtColor(rgb, expected_bgr, cv::COLOR_RGB2BGR);
  CHECK(original.size() == rgb.size());
  CHECK(cv::norm(original, expected_bgr, cv::NORM_INF) == 0);  // alpha 0: the image itself

  const cv::Mat ones(3, 3, CV_32F, cv::Scalar(1.0f));
  cv::Mat hottest;
  cv::applyColorMap(cv::Mat(1, 1, CV_8U, cv::Scalar(255)), hottest, cv::COLORMAP_JET);
  const cv::Mat full = evaluate::overlay_heatmap(rgb, ones, 1.0);
  CHECK(full.at<cv::Vec3b>(10, 10) == hottest.at<cv::Vec3b>(0, 0));  // alpha 1: the colour map alone
  const cv::Mat half = evaluate::overlay_heatmap(rgb, heat, 0.5);
  CHECK(cv::norm(half, original, cv::NORM_L1) > 0);

  CHECK_THROWS_AS(evaluate::overlay_heatmap(rgb, heat, 1.5), std::invalid_argument);
  CHECK_THROWS_AS(evaluate::overlay_heatmap(rgb, cv::Mat(7, 7, CV_8U, cv::Scalar(1)), 0.5), std::invalid_argument);
  CHECK_THROWS_AS(evaluate::overlay_heatmap(cv::Mat(), heat, 0.5), std::invalid_argument);

  // A Grad-CAM figure as the evaluate stage lays it out: original + top-4 classes, two images.
  std::vector<cv::Mat> parts;
  for (int image = 0; image < 2; ++image) {
    const cv::Mat photo = sample_photo(image == 0 ? "rose" : "sunflower", image);
    std::vector<std::pair<cv::Mat, std::string>> row = {{evaluate::overlay_heatmap(photo, heat, 0.0), image == 0 ? "true: rose" : "true: sunflower"}};
    const char* guesses[][2] = {{"rose", "0.91"}, {"tulip", "0.05"}, {"daisy", "0.02"}, {"sunflower", "0.01"}};
    int shift = 0;
    for (const auto& guess : guesses) {
      cv::Mat moved;
      cv::warpAffine(heat, moved, cv::Mat_<double>({2, 3}, {1, 0, shift - 1.5, 0, 1, 1.5 - shift}), heat.size());
      row.emplace_back(evaluate::overlay_heatmap(photo, moved, 0.45), std::string(guess[0]) + " p=" + guess[1]);
      ++shift;
    }
    const cv::Mat labelled = evaluate::draw_labelled_row(row, 160);
    CHECK(labelled.rows > 160);
    CHECK(labelled.rows < 160 + 60);
    parts.push_back(labelled);
  }
  const cv::Mat figure = evaluate::stack_vertically(parts, "Grad-CAM, test split");
  save_for_review(dir, "gradcam.png", figure);
  CHECK(figure.rows > parts[0].rows + parts[1].rows);
  CHECK(figure.cols == std::max(parts[0].cols, parts[1].cols));

  const cv::Mat strip = evaluate::caption_strip("image_00042.jpg", 300);
  CHECK(strip.cols == 300);
  CHECK(pixels_of(strip, cv::Scalar(255, 255, 255)) < strip.rows * strip.cols);
}

}  // namespace
}  // namespace petal
