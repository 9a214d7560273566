// The exported MLflow model's Python preprocessing (stages/evaluate/pyfunc/petal_pyfunc.py) against
// petal's own evaluation view: decode_image -> eval_transform -> normalize_into must give the same
// float32 tensor bit for bit (tests/parity/pyfunc_check.py compares).
#include <doctest/doctest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "stages/augment/augment_pipeline.h"
#include "stages/augment/image_decode.h"
#include "stages/augment/normalize.h"
#include "tests/support/python_reference.h"
#include "tests/support/test_support.h"

namespace petal {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

struct PreprocessingSpec {
  std::string name;
  int image_size, eval_resize, cache_short_side;
  bool upscale;
  augment::Normalization statistics;

  json to_json() const {
    return {{"image_size", image_size}, {"eval_resize", eval_resize}, {"cache_short_side", cache_short_side},
            {"upscale", upscale}, {"mean", statistics.mean}, {"std", statistics.std}, {"colour_order", "RGB"}};
  }
};

// petal's evaluation input for one encoded image, as the loader and the evaluate stage compute it.
std::vector<float> petal_tensor(const fs::path& file, const PreprocessingSpec& spec) {
  const cv::Mat rgb = augment::decode_image(augment::read_file_bytes(file), spec.cache_short_side, spec.upscale);
  const cv::Mat view = augment::eval_transform(rgb, spec.image_size, spec.eval_resize);
  std::vector<float> out(static_cast<std::size_t>(3) * view.rows * view.cols);
  augment::normalize_into(view, out.data(), /*channels_last=*/false, augment::NormalizationTable(spec.statistics));
  return out;
}

TEST_CASE("pyfunc preprocessing: Python decodes, crops and normalises exactly as petal") {
  const std::vector<PreprocessingSpec> specs = {
      {"small_no_upscale", 64, 73, 96, false, augment::Normalization::imagenet()},
      {"standard_upscale", 224, 256, 256, true, augment::Normalization::inception()},
      {"odd_sizes", 97, 131, 113, false, augment::Normalization::imagenet()},
  };
  test::TempDir dir;
  test::run_python_reference("pyfunc_check.py", {"images", (dir / "images").string()});
  const json images = json::parse(test::read_file(dir / "images/images.json"));
  REQUIRE(images.size() >= 8);

  for (const PreprocessingSpec& spec : specs) {
    const fs::path cpp_dir = dir / spec.name;
    fs::create_directories(cpp_dir);
    for (const auto& [image, size] : images.items()) {
      const std::vector<float> tensor = petal_tensor(dir / "images" / image, spec);
      std::ofstream(cpp_dir / (image + ".f32"), std::ios::binary)
          .write(reinterpret_cast<const char*>(tensor.data()), static_cast<std::streamsize>(tensor.size() * sizeof(float)));
    }
    test::write_file(dir / (spec.name + ".json"), spec.to_json().dump());
    test::run_python_reference("pyfunc_check.py", {"preprocess", (dir / (spec.name + ".json")).string(),
                                                   (dir / "images").string(), cpp_dir.string(),
                                                   (dir / (spec.name + "_result.json")).string()});
    const json results = json::parse(test::read_file(dir / (spec.name + "_result.json")));
    CHECK(results.size() == images.size());
    for (const auto& [image, result] : results.items()) {
      INFO(spec.name << " " << image << ": " << result.dump());
      CHECK(result.at("max_abs_diff") == 0.0);
      CHECK(result.at("shape") == json{3, spec.image_size, spec.image_size});
    }
    if (spec.name == "small_no_upscale") {
      // The cases this test exists for really happen: DCT-scaled decodes and an EXIF rotation.
      CHECK(results.at("large.jpg").at("decode") == "IMREAD_REDUCED_COLOR_8");
      CHECK(results.at("progressive.jpg").at("decode") == "IMREAD_REDUCED_COLOR_4");
      CHECK(results.at("exif_rotated.jpg").at("decode") == "IMREAD_REDUCED_COLOR_4");
      CHECK(results.at("gray.jpg").at("decode") == "IMREAD_REDUCED_COLOR_2");
      CHECK(results.at("small.jpg").at("decode") == "IMREAD_COLOR");
      CHECK(results.at("exif_rotated.jpg").at("orientation_matters") == true);
    }
  }
}

}  // namespace
}  // namespace petal
