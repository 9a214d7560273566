// `petal predict` end to end (petal, petal-worker; no tracking): what it says of images it cannot
// classify. A truncated JPEG once came back with probabilities and exit 0, and an empty file with a
// raw OpenCV assertion (issue 26).
#include <doctest/doctest.h>

#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "tests/support/colour_images.h"
#include "tests/support/test_support.h"

namespace petal {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using test::TempDir;

std::string experiment(const fs::path& data) {
  return "name = \"predict\"\n"
         "[download]\nsource = \"local\"\npath = \"" + data.string() + "\"\n"
         "[split]\nratios = [0.6, 0.2, 0.2]\nseed = 1\n"
         "[augment]\npolicy = \"light\"\nimage_size = 32\n"
         "[train]\nmodel = \"small_cnn\"\nweights = \"none\"\nfreeze_backbone = false\nthreads = 1\nbatch_size = 8\n"
         "epochs = 1\n";
}

int petal(const TempDir& dir, const std::string& args, std::string* output) {
  return test::run_command("cd " + dir.path().string() + " && " + test::petal_binary() + " --state-dir state " + args +
                               " 2>&1",
                           output);
}

// Every class's probability of each image, from `petal predict --json`.
std::vector<std::vector<double>> probabilities(const std::string& output) {
  const std::size_t start = output.find('{');
  REQUIRE(start != std::string::npos);
  const json answer = json::parse(output.substr(start, output.rfind('}') - start + 1));
  std::vector<std::vector<double>> rows;
  for (const json& prediction : answer["predictions"]) {
    std::vector<double> row;
    for (const auto& entry : prediction["probabilities"].items()) row.push_back(entry.value().get<double>());  // by class name
    rows.push_back(row);
  }
  return rows;
}

fs::path first_jpeg(const fs::path& root) {
  for (const auto& entry : fs::recursive_directory_iterator(root)) {
    if (entry.path().extension() == ".jpg") return entry.path();
  }
  return {};
}

}  // namespace

TEST_CASE("petal predict: a truncated or empty image is named with its problem, the others are classified, exit 2") {
  TempDir dir;
  test::make_colour_images(dir / "data", 6, 3);
  test::write_file(dir / "x.toml", experiment(dir / "data"));
  std::string output;
  REQUIRE_MESSAGE(petal(dir, "run --no-tracking x.toml", &output) == 0, output);
  const fs::path model = test::newest_stage_output(dir / "state", "train");
  REQUIRE(!model.empty());

  const fs::path good = first_jpeg(dir / "data");
  REQUIRE(!good.empty());
  const std::string bytes = test::read_file(good);
  REQUIRE(bytes.size() > 400);
  test::write_file(dir / "truncated.jpg", bytes.substr(0, bytes.size() - 300));  // a cut-off download
  test::write_file(dir / "empty.jpg", "");

  const int code = petal(dir, "predict --json --model " + model.string() + " " + good.string() + " truncated.jpg empty.jpg",
                         &output);
  INFO(output);
  CHECK(code == 2);
  const std::size_t start = output.find('{');
  REQUIRE(start != std::string::npos);
  const json answer = json::parse(output.substr(start, output.rfind('}') - start + 1));
  REQUIRE(answer["predictions"].size() == 3);
  CHECK(answer["predictions"][0].contains("top"));
  CHECK(answer["predictions"][1]["error"] == "truncated JPEG (no end-of-image marker)");
  CHECK_FALSE(answer["predictions"][1].contains("top"));
  CHECK(answer["predictions"][2]["error"] == "empty file");
  CHECK(output.find("2 of 3 images could not be classified") != std::string::npos);

  // One good image alone: exit 0.
  CHECK(petal(dir, "predict --model " + model.string() + " " + good.string(), &output) == 0);
}


// The views of --tta, computed here with OpenCV from a 32 px image: the image, its mirror image, and
// the five 28 px crops (7/8 of the side: centre, then the corners) enlarged back to 32 px, bilinear.
std::vector<cv::Mat> tta_views(const cv::Mat& image, const std::string& mode) {
  const auto mirror = [](const cv::Mat& m) {
    cv::Mat out;
    cv::flip(m, out, 1);
    return out;
  };
  if (mode == "flip") return {image, mirror(image)};
  const int side = 28, far = 32 - side, centre = far / 2;
  std::vector<cv::Mat> views;
  for (const cv::Point& corner : {cv::Point(centre, centre), cv::Point(0, 0), cv::Point(far, 0), cv::Point(0, far),
                                  cv::Point(far, far)}) {
    cv::Mat crop, enlarged, rounded;
    image(cv::Rect(corner.x, corner.y, side, side)).convertTo(crop, CV_32F);
    cv::resize(crop, enlarged, cv::Size(32, 32), 0, 0, cv::INTER_LINEAR);
    enlarged.convertTo(rounded, CV_8U);  // rounds to the nearest level: within 0.5/255 of the worker's float view
    views.push_back(rounded);
    if (mode == "flip_crops") views.push_back(mirror(rounded));
  }
  return views;
}

// --tta averages each image's probabilities over its views: the same numbers as predicting each view
// separately and averaging. The images are written as PNG at exactly the model's input size with
// eval_resize = image_size, so the evaluation view is the image itself (no crop whose off-centre pixel
// would break the mirror symmetry, no JPEG rounding). The evaluate stage runs with tta = "flip_crops".
TEST_CASE("petal predict --tta flip, crops, flip_crops: the mean of the probabilities of the image's views") {
  TempDir dir;
  test::make_colour_images(dir / "data", 6, 3);
  test::write_file(dir / "x.toml", experiment(dir / "data") + "[evaluate]\ntta = \"flip_crops\"\nsplits = [\"test\"]\n"
                                   "gradcam_images = 0\ngallery_images = 0\nneeds = [\"augment\", \"train\"]\n");
  std::string output;
  REQUIRE_MESSAGE(petal(dir, "run --no-tracking --set augment.eval_resize=32 x.toml", &output) == 0, output);
  CHECK(!test::newest_stage_output(dir / "state", "evaluate").empty());  // the stage's tta = flip_crops ran
  const fs::path model = test::newest_stage_output(dir / "state", "train");
  REQUIRE(!model.empty());

  cv::Mat image = cv::imread(first_jpeg(dir / "data").string());
  REQUIRE(!image.empty());
  cv::resize(image, image, cv::Size(32, 32), 0, 0, cv::INTER_AREA);
  REQUIRE(cv::imwrite((dir / "image.png").string(), image));
  REQUIRE(petal(dir, "predict --json -k 3 --model " + model.string() + " image.png", &output) == 0);
  const std::vector<double> plain = probabilities(output).at(0);

  for (const std::string mode : {"flip", "crops", "flip_crops"}) {
    INFO("--tta " << mode);
    const std::vector<cv::Mat> views = tta_views(image, mode);
    std::string files;
    for (std::size_t v = 0; v < views.size(); ++v) {
      const std::string name = mode + "_" + std::to_string(v) + ".png";
      REQUIRE(cv::imwrite((dir / name).string(), views[v]));
      files += " " + name;
    }
    REQUIRE(petal(dir, "predict --json -k 3 --model " + model.string() + files, &output) == 0);
    const auto separately = probabilities(output);
    REQUIRE(petal(dir, "predict --json -k 3 --tta " + mode + " --model " + model.string() + " image.png", &output) == 0);
    const auto averaged = probabilities(output);
    REQUIRE(separately.size() == views.size());
    REQUIRE(averaged.size() == 1);
    REQUIRE(averaged[0].size() == plain.size());
    double moved = 0, error = 0;
    for (std::size_t c = 0; c < plain.size(); ++c) {
      double mean = 0;
      for (const auto& row : separately) mean += row[c] / static_cast<double>(separately.size());
      // flip views are exact; enlarged crops were rounded to 8 bits here, not in the worker
      CHECK(averaged[0][c] == doctest::Approx(mean).epsilon(mode == "flip" ? 1e-5 : 2e-4));
      moved = std::max(moved, std::fabs(mean - plain[c]));
      error = std::max(error, std::fabs(averaged[0][c] - mean));
    }
    MESSAGE("--tta " << mode << ": largest change of a probability from the plain prediction: " << moved
                     << ", largest difference from the views predicted separately: " << error);
    CHECK(moved > 2e-3);  // the views really are other inputs to this model (else the check proves nothing)
  }
}

}  // namespace petal
