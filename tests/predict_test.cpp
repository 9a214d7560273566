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


// --tta flip averages each image's probabilities with its mirror image's: the same numbers as
// predicting the image and a mirrored copy separately. The images are written as PNG at exactly the
// model's input size with eval_resize = image_size, so the evaluation view is the image itself
// (no crop whose off-centre pixel would break the mirror symmetry, no JPEG rounding).
TEST_CASE("petal predict --tta flip: the mean of the image's and its mirror image's probabilities") {
  TempDir dir;
  test::make_colour_images(dir / "data", 6, 3);
  test::write_file(dir / "x.toml", experiment(dir / "data") + "[evaluate]\ntta = \"flip\"\nsplits = [\"test\"]\n"
                                   "gradcam_images = 0\ngallery_images = 0\nneeds = [\"augment\", \"train\"]\n");
  std::string output;
  REQUIRE_MESSAGE(petal(dir, "run --no-tracking --set augment.eval_resize=32 x.toml", &output) == 0, output);
  CHECK(!test::newest_stage_output(dir / "state", "evaluate").empty());  // the stage's tta = flip ran
  const fs::path model = test::newest_stage_output(dir / "state", "train");
  REQUIRE(!model.empty());

  cv::Mat image = cv::imread(first_jpeg(dir / "data").string());
  REQUIRE(!image.empty());
  cv::resize(image, image, cv::Size(32, 32), 0, 0, cv::INTER_AREA);
  cv::Mat mirrored;
  cv::flip(image, mirrored, 1);
  REQUIRE(cv::imwrite((dir / "image.png").string(), image));
  REQUIRE(cv::imwrite((dir / "mirrored.png").string(), mirrored));

  REQUIRE(petal(dir, "predict --json -k 3 --model " + model.string() + " image.png mirrored.png", &output) == 0);
  const auto plain = probabilities(output);
  REQUIRE(petal(dir, "predict --json -k 3 --tta flip --model " + model.string() + " image.png", &output) == 0);
  const auto flipped = probabilities(output);
  REQUIRE(plain.size() == 2);
  REQUIRE(flipped.size() == 1);
  REQUIRE(flipped[0].size() == plain[0].size());
  double moved = 0;
  for (std::size_t c = 0; c < plain[0].size(); ++c) {
    CHECK(flipped[0][c] == doctest::Approx((plain[0][c] + plain[1][c]) / 2).epsilon(1e-4));
    moved = std::max(moved, std::fabs(plain[0][c] - plain[1][c]));
  }
  MESSAGE("largest probability difference between the image and its mirror: " << moved);
  CHECK(moved > 1e-6);  // the mirror really is another input to this model (else the check proves nothing)
}

}  // namespace petal
