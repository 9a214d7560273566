// `petal predict` end to end (petal, petal-worker; no tracking): what it says of images it cannot
// classify. A truncated JPEG once came back with probabilities and exit 0, and an empty file with a
// raw OpenCV assertion (issue 26).
#include <doctest/doctest.h>

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

}  // namespace petal
