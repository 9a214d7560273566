// Image operations, policies, the image cache and the augment stage (OpenCV side; no LibTorch).
#include <doctest/doctest.h>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <fstream>
#include <string>

#include "pipeline/dag/stage_registry.h"
#include "stages/augment/augment_config.h"
#include "stages/augment/augment_impl.h"
#include "stages/augment/augment_pipeline.h"
#include "stages/augment/augment_stage.h"
#include "stages/augment/cache_builder.h"
#include "stages/augment/color_ops.h"
#include "stages/augment/geometry_ops.h"
#include "stages/augment/image_cache.h"
#include "stages/augment/image_check.h"
#include "stages/augment/image_decode.h"
#include "stages/augment/normalize.h"
#include "stages/augment/policy_presets.h"
#include "stages/augment/preview_grid.h"
#include "stages/augment/split_table.h"
#include "tests/support/test_support.h"

using namespace petal;
using namespace petal::augment;
using petal::test::TempDir;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

// A deterministic textured RGB image: every pixel differs from its neighbours, so any geometric
// change is visible in the bytes.
cv::Mat pattern(int width, int height, int seed = 1) {
  cv::Mat image(height, width, CV_8UC3);
  cv::RNG rng(static_cast<std::uint64_t>(seed));
  rng.fill(image, cv::RNG::UNIFORM, 0, 256);
  return image;
}

bool same_bytes(const cv::Mat& a, const cv::Mat& b) {
  return a.size() == b.size() && a.type() == b.type() && cv::norm(a, b, cv::NORM_INF) == 0;
}

Policy everything_on() {  // every op fires on every sample
  Policy policy;
  policy.name = "all";
  for (const auto& info : op_table()) policy[info.op].probability = 1;
  return policy;
}

std::string complaint_for(const std::vector<std::string>& overrides, const std::string& policy = "medium") {
  try {
    resolve_policy(policy, overrides);
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "";
}

// A split stage's output over PNG images written in `root`: `per_class` images per class, the
// first of each class in val, the rest in train.
fs::path make_split(const TempDir& dir, int per_class, int width = 40, int height = 30) {
  const fs::path root = dir / "images", split = dir / "split";
  fs::create_directories(split);
  std::ofstream tsv(split / "split.tsv");
  tsv << "path\tlabel\tsplit\tsha256\n";
  std::ofstream classes(split / "classes.txt");
  int seed = 0;
  for (const std::string label : {"daisy", "rose"}) {
    classes << label << '\n';
    fs::create_directories(root / label);
    for (int i = 0; i < per_class; ++i) {
      const std::string rel = label + "/" + std::to_string(i) + ".png";
      cv::imwrite((root / rel).string(), pattern(width + i, height, ++seed));
      tsv << rel << '\t' << label << '\t' << (i == 0 ? "val" : "train") << "\tignored\n";
    }
  }
  std::ofstream(split / "source.json") << json{{"root", root.string()}}.dump();
  return split;
}

json stage_params(const std::string& policy = "medium", const std::vector<std::string>& overrides = {}) {
  json params = {{"policy", policy}, {"overrides", overrides}, {"image_size", 32}, {"eval_resize", 0},
                 {"cache_short_side", 0},   {"upscale", false},        {"seed", 7}};
  json previews = json::array();
  for (const char* name : {"light", "medium", "deep"}) previews.push_back(preset_policy(name).to_json());
  params["resolved"] = {{"policy", resolve_policy(policy, overrides).to_json()}, {"previews", previews}};
  return params;
}

}  // namespace

// ---- determinism ----

TEST_CASE("augmentation of sample i in epoch e with seed s is a pure function of (s, e, i)") {
  const cv::Mat source = pattern(80, 60);
  for (const Policy& policy : {everything_on(), preset_policy("medium"), preset_policy("deep")}) {
    CAPTURE(policy.name);
    const cv::Mat a = augment_sample(source, policy, {3, 5, 11}, 48, 55);
    const cv::Mat b = augment_sample(source.clone(), policy, {3, 5, 11}, 48, 55);
    CHECK(a.size() == cv::Size(48, 48));
    CHECK(a.type() == CV_8UC3);
    CHECK(same_bytes(a, b));
    CHECK_FALSE(same_bytes(a, augment_sample(source, policy, {3, 6, 11}, 48, 55)));  // another epoch
    CHECK_FALSE(same_bytes(a, augment_sample(source, policy, {3, 5, 12}, 48, 55)));  // another sample
    CHECK_FALSE(same_bytes(a, augment_sample(source, policy, {4, 5, 11}, 48, 55)));  // another seed
  }
}

TEST_CASE("each op draws from its own stream: changing one op leaves the others' draws alone") {
  const cv::Mat source = pattern(64, 64);
  Policy crop_only;
  crop_only[Op::Crop] = {1, 0.3};
  Policy with_hue = crop_only;
  with_hue[Op::Hue] = {1, 0};  // fires, but a zero shift changes nothing
  CHECK(same_bytes(augment_sample(source, crop_only, {1, 2, 3}, 32, 36), augment_sample(source, with_hue, {1, 2, 3}, 32, 36)));
}

TEST_CASE("the random generator's sequence is fixed by its definition") {
  Rng rng(42);
  // SplitMix64's published sequence for seed 42 (first outputs), the same on every platform.
  CHECK(rng.next() == 0xbdd732262feb6e95ULL);
  CHECK(rng.next() == 0x28efe333b266f103ULL);
  Rng a(stream_seed(1, 2, 3, 4)), b(stream_seed(1, 2, 3, 4)), c(stream_seed(1, 2, 4, 3));
  CHECK(a.next() == b.next());
  CHECK(a.next() != c.next());
  Rng u(9);
  for (int i = 0; i < 1000; ++i) {
    const double x = u.uniform();
    REQUIRE(x >= 0);
    REQUIRE(x < 1);
    REQUIRE(u.below(7) < 7);
  }
}

// ---- geometry ----

TEST_CASE("a horizontal flip maps pixel (x, y) to (w-1-x, y), a vertical flip to (x, h-1-y)") {
  const cv::Mat image = pattern(7, 5);
  const cv::Mat h = hflip(image), v = vflip(image);
  for (int y = 0; y < 5; ++y) {
    for (int x = 0; x < 7; ++x) {
      REQUIRE(h.at<cv::Vec3b>(y, 6 - x) == image.at<cv::Vec3b>(y, x));
      REQUIRE(v.at<cv::Vec3b>(4 - y, x) == image.at<cv::Vec3b>(y, x));
    }
  }
}

TEST_CASE("rotation, zoom and the distortions keep the image size") {
  const cv::Mat image = pattern(50, 30);
  for (double degrees : {-30.0, 7.5, 90.0, 180.0}) CHECK(rotate(image, degrees).size() == image.size());
  CHECK(zoom(image, 1.3).size() == image.size());
  CHECK(affine(image, 12, 0.8, 3.5, -2).size() == image.size());
  WarpField field = identity_field(image.size());
  add_optical_distortion(field, 0.3);
  Rng rng(1);
  add_elastic_distortion(field, 2.0, rng);
  CHECK(remap(image, field).size() == image.size());
  CHECK(same_bytes(remap(image, identity_field(image.size())), image));
}

TEST_CASE("a 90 degree rotation turns pixel (x, y) of a square into (y, w-1-x)") {
  cv::Mat image(9, 9, CV_8UC3, cv::Scalar(0, 0, 0));
  image.at<cv::Vec3b>(2, 7) = cv::Vec3b(255, 10, 20);  // (x=7, y=2)
  const cv::Mat turned = rotate(image, 90);
  CHECK(turned.at<cv::Vec3b>(9 - 1 - 7, 2) == cv::Vec3b(255, 10, 20));  // row w-1-x, column y
}

TEST_CASE("translation moves a marked pixel by exactly the shift") {
  cv::Mat image(30, 40, CV_8UC3, cv::Scalar(0, 0, 0));
  image.at<cv::Vec3b>(7, 10) = cv::Vec3b(200, 100, 50);  // (x=10, y=7)
  const cv::Mat moved = translate(image, 5, 3);
  CHECK(moved.at<cv::Vec3b>(10, 15) == cv::Vec3b(200, 100, 50));
  CHECK(moved.at<cv::Vec3b>(7, 10) == cv::Vec3b(0, 0, 0));
  CHECK(cv::countNonZero(moved.reshape(1) > 0) == 3);  // the one pixel, nothing smeared
  const cv::Mat back = translate(image, -4, -2);
  CHECK(back.at<cv::Vec3b>(5, 6) == cv::Vec3b(200, 100, 50));
}

TEST_CASE("random resized crops stay inside the image with the allowed area") {
  Rng rng(5);
  const cv::Size size(120, 80);
  for (int i = 0; i < 500; ++i) {
    const cv::Rect r = random_resized_crop_rect(size, 0.25, rng);
    REQUIRE(r.x >= 0);
    REQUIRE(r.y >= 0);
    REQUIRE(r.x + r.width <= size.width);
    REQUIRE(r.y + r.height <= size.height);
    REQUIRE(r.area() >= 0.2 * size.area());
  }
  CHECK(crop_resize(pattern(120, 80), cv::Rect(10, 5, 60, 40), 32).size() == cv::Size(32, 32));
}

TEST_CASE("resize short side, centre crop and the evaluation view") {
  const cv::Mat image = pattern(300, 200);
  CHECK(resize_short_side(image, 100).size() == cv::Size(150, 100));
  CHECK(resize_short_side(pattern(200, 300), 100).size() == cv::Size(100, 150));
  const cv::Mat crop = center_crop(image, 50);
  CHECK(crop.size() == cv::Size(50, 50));
  CHECK(crop.at<cv::Vec3b>(0, 0) == image.at<cv::Vec3b>(75, 125));
  CHECK_THROWS_AS(center_crop(image, 201), std::invalid_argument);
  // eval_view(image, S, R) == centre crop S of the image resized to short side R, when R = short side.
  const cv::Mat square = pattern(64, 64);
  CHECK(same_bytes(eval_view(square, 56, 64), center_crop(square, 56)));
  CHECK(eval_transform(image, 224, 256).size() == cv::Size(224, 224));
}

// ---- colour ----

TEST_CASE("colour ops: brightness scales, saturation 0 is grey, hue 0 and 1 turn are identities") {
  cv::Mat image(4, 4, CV_8UC3, cv::Scalar(100, 50, 200));
  cv::Mat bright = image.clone();
  adjust_brightness(bright, 1.5);
  CHECK(bright.at<cv::Vec3b>(0, 0) == cv::Vec3b(150, 75, 255));
  cv::Mat grey = image.clone();
  adjust_saturation(grey, 0);
  const cv::Vec3b g = grey.at<cv::Vec3b>(0, 0);
  CHECK(g[0] == g[1]);
  CHECK(g[1] == g[2]);
  CHECK(std::abs(g[0] - (0.299 * 100 + 0.587 * 50 + 0.114 * 200)) <= 1);
  cv::Mat flat = image.clone();
  adjust_contrast(flat, 0);  // every pixel becomes the mean grey
  CHECK(flat.at<cv::Vec3b>(0, 0)[0] == flat.at<cv::Vec3b>(0, 0)[2]);
  cv::Mat same = image.clone();
  shift_hue(same, 1.0);
  CHECK(same_bytes(same, image));
  cv::Mat erased = pattern(32, 32);
  erase(erased, cv::Rect(4, 4, 8, 8));
  CHECK(erased.at<cv::Vec3b>(5, 5) == cv::Vec3b(124, 116, 104));  // the ImageNet mean colour
  cv::Mat noisy = image.clone();
  Rng rng(3);
  add_noise(noisy, 0.05, rng);
  CHECK_FALSE(same_bytes(noisy, image));
  CHECK(std::abs(cv::mean(noisy)[0] - 100) < 3);
}

// ---- normalisation ----

TEST_CASE("normalisation of a constant image v gives (v/255 - mean) / std per channel") {
  const double mean[3] = {0.485, 0.456, 0.406}, stdev[3] = {0.229, 0.224, 0.225};
  for (int v : {0, 1, 124, 128, 255}) {
    const cv::Mat image(3, 5, CV_8UC3, cv::Scalar(v, v, v));
    std::vector<float> planar(3 * 15), interleaved(3 * 15);
    normalize_into(image, planar.data(), false);
    normalize_into(image, interleaved.data(), true);
    for (int c = 0; c < 3; ++c) {
      const float expected = static_cast<float>((v / 255.0 - mean[c]) / stdev[c]);
      for (int p = 0; p < 15; ++p) {
        REQUIRE(planar[c * 15 + p] == expected);
        REQUIRE(interleaved[p * 3 + c] == expected);
      }
    }
  }
  // Channel order: an RGB image (255, 0, 0) is red: channel 0 high, others low.
  const cv::Mat red(1, 1, CV_8UC3, cv::Scalar(255, 0, 0));
  float out[3];
  normalize_into(red, out);
  CHECK(out[0] == doctest::Approx((1 - 0.485) / 0.229));
  CHECK(out[1] == doctest::Approx(-0.456 / 0.224));
}

TEST_CASE("inception normalisation maps 0..255 onto -1..1 and unknown names are refused with the choices") {
  const NormalizationTable inception(Normalization::inception());
  const cv::Mat image(1, 3, CV_8UC3, cv::Scalar(0, 255, 51));
  float out[9];
  normalize_into(image, out, true, inception);
  CHECK(out[0] == -1.0f);
  CHECK(out[1] == 1.0f);
  CHECK(out[2] == doctest::Approx(51 / 127.5 - 1));
  CHECK(Normalization::named("imagenet").std[2] == 0.225);
  CHECK_THROWS_WITH_AS(Normalization::named("tf"), "unknown normalization 'tf'; use \"imagenet\" or \"inception\"",
                       std::invalid_argument);
}

// ---- policies ----

TEST_CASE("the presets are TOML, parse, and differ in strength") {
  CHECK(presets_toml().find("[medium]") != std::string::npos);
  const Policy none = preset_policy("none"), light = preset_policy("light"), medium = preset_policy("medium"),
               deep = preset_policy("deep");
  for (const auto& info : op_table()) CHECK(none[info.op].probability == 0);
  CHECK(medium[Op::Rotate].probability == 0.3);
  CHECK(medium[Op::Rotate].magnitude == 15);
  CHECK(medium[Op::Crop].magnitude == 0.25);
  CHECK(light[Op::Crop].magnitude > medium[Op::Crop].magnitude);  // larger minimum area = milder
  CHECK(deep[Op::Crop].magnitude < medium[Op::Crop].magnitude);
  CHECK_FALSE(light.active(Op::Rotate));
  CHECK(deep.active(Op::Elastic));
  CHECK(Policy::from_json(deep.to_json()).to_json() == deep.to_json());
  CHECK_THROWS_AS(preset_policy("heavy"), std::invalid_argument);
}

TEST_CASE("overrides change one op's probability or magnitude") {
  const Policy p = resolve_policy("medium", {"rotate.probability=0.7", " hue.magnitude = 0.1 ", "vflip.probability=1"});
  CHECK(p[Op::Rotate].probability == 0.7);
  CHECK(p[Op::Rotate].magnitude == 15);
  CHECK(p[Op::Hue].magnitude == 0.1);
  CHECK(p[Op::VFlip].probability == 1);
  CHECK(p.name == "medium");
  const Policy from_none = resolve_policy("none", {"blur.probability=0.5"});
  CHECK(from_none[Op::Blur].probability == 0.5);
  CHECK(from_none[Op::Blur].magnitude == 1.5);  // the op's default magnitude
}

TEST_CASE("invalid overrides are errors naming the entry, the op and the field") {
  CHECK(complaint_for({"rotate.probability=0.3", "rotat.probability=0.3"}) ==
        "entry 2 \"rotat.probability=0.3\": unknown op 'rotat' (did you mean 'rotate'?); ops are: crop, hflip, "
        "vflip, rotate, translate, scale, elastic, optical, brightness, contrast, saturation, hue, blur, noise, erase");
  CHECK(complaint_for({"rotate.probabilty=0.3"}) ==
        "entry 1 \"rotate.probabilty=0.3\": rotate.probabilty: unknown field 'probabilty' (did you mean "
        "'probability'?); fields are probability and magnitude");
  CHECK(complaint_for({"rotate.probability=1.5"}) ==
        "entry 1 \"rotate.probability=1.5\": rotate.probability must be in [0, 1] (got 1.5)");
  CHECK(complaint_for({"rotate.magnitude=200"}) ==
        "entry 1 \"rotate.magnitude=200\": rotate.magnitude must be in [0, 180], the largest rotation in degrees, "
        "either way (got 200)");
  CHECK(complaint_for({"hflip.magnitude=2"}) ==
        "entry 1 \"hflip.magnitude=2\": hflip.magnitude: hflip has no magnitude, only a probability");
  CHECK(complaint_for({"blur.magnitude=abc"}) == "entry 1 \"blur.magnitude=abc\": blur.magnitude must be a number (got \"abc\")");
  CHECK(complaint_for({"rotate=0.3"}) ==
        "entry 1 \"rotate=0.3\": 'rotate' names no field; expected op.field=value with field probability or "
        "magnitude, e.g. rotate.probability=0.3");
  CHECK(complaint_for({"rotate.probability"}) ==
        "entry 1 \"rotate.probability\": expected op.field=value, e.g. rotate.probability=0.3");
  CHECK(complaint_for({"noise.magnitude=nan"}).find("must be a number") != std::string::npos);
}

TEST_CASE("the augment stage validates overrides and sizes in its check") {
  StageRegistry registry;
  register_builtin_stages(registry);
  const StageKind* kind = registry.find("augment");
  REQUIRE(kind);
  CHECK(registry.order("augment") == registry.order("split") + 1);
  json params = {{"policy", "medium"}, {"overrides", {"erase.magnitude=0"}}, {"image_size", 224},
                 {"eval_resize", 200},  {"cache_short_side", 0},              {"upscale", false}, {"seed", 0}};
  const auto problems = kind->check(params);
  REQUIRE(problems.size() == 2);
  CHECK(problems[0].first == "overrides");
  CHECK(problems[0].second ==
        "has an invalid entry 1 \"erase.magnitude=0\": erase.magnitude must be in [0.02, 1], the largest erased "
        "area as a fraction of the image (smallest 0.02) (got 0)");
  CHECK(problems[1] == std::make_pair(std::string("eval_resize"), std::string("must be 0 or at least image_size (224), got 200")));
  params["overrides"] = {"rotat.probability=1", "rotate.magnitude=10", "hue.magnitude=0.9"};
  params["eval_resize"] = 0;
  const auto all = kind->check(params);  // every invalid entry, not just the first
  REQUIRE(all.size() == 2);
  CHECK(all[0].second.rfind("has an invalid entry 1 \"rotat.probability=1\"", 0) == 0);
  CHECK(all[1].second.rfind("has an invalid entry 3 \"hue.magnitude=0.9\"", 0) == 0);
  CHECK(override_errors({"rotate.magnitude=10"}).empty());
  params["overrides"] = json::array();
  params["eval_resize"] = 0;
  CHECK(kind->check(params).empty());
  CHECK(kind->version.rfind("augment/2+", 0) == 0);
}

// ---- decoding and the image cache ----

TEST_CASE("jpeg_size reads the frame header, and decode_image gives RGB at the cache short side") {
  cv::Mat bgr(300, 400, CV_8UC3, cv::Scalar(255, 0, 0));  // blue in OpenCV's BGR order
  std::vector<unsigned char> jpeg;
  cv::imencode(".jpg", bgr, jpeg);
  const auto size = jpeg_size(jpeg.data(), jpeg.size());
  REQUIRE(size);
  CHECK(*size == cv::Size(400, 300));
  std::vector<unsigned char> png;
  cv::imencode(".png", bgr, png);
  CHECK_FALSE(jpeg_size(png.data(), png.size()));

  const cv::Mat reduced = decode_image(jpeg, 64, false);  // decoded at 1/4 scale, then resized
  CHECK(reduced.size() == cv::Size(85, 64));
  const cv::Vec3b pixel = reduced.at<cv::Vec3b>(10, 10);
  CHECK(pixel[2] > 240);  // RGB: blue is the third channel
  CHECK(pixel[0] < 15);
  CHECK(decode_image(png, 1000, false).size() == cv::Size(400, 300));  // never enlarged...
  CHECK(decode_image(png, 600, true).size() == cv::Size(800, 600));    // ...unless asked
  CHECK_THROWS_AS(decode_image(std::vector<unsigned char>{1, 2, 3}, 64, false), std::runtime_error);
}

TEST_CASE("decode_image refuses a truncated JPEG or PNG and an empty buffer with the reason split gives") {
  cv::Mat bgr(64, 64, CV_8UC3, cv::Scalar(20, 200, 40));
  std::vector<unsigned char> jpeg, png;
  cv::imencode(".jpg", bgr, jpeg);
  cv::imencode(".png", bgr, png);
  const auto message_of = [](std::vector<unsigned char> bytes) {
    try {
      decode_image(bytes, 32, false);
    } catch (const std::runtime_error& e) {
      return std::string(e.what());
    }
    return std::string("(decoded)");
  };
  // OpenCV alone decodes a cut-off JPEG "successfully" to a half-grey picture.
  CHECK(message_of({jpeg.begin(), jpeg.end() - 100}) == "truncated JPEG (no end-of-image marker)");
  CHECK(message_of({png.begin(), png.end() - 20}) == "truncated PNG (no IEND chunk)");
  CHECK(message_of({}) == "empty file");  // once a raw OpenCV assertion
  CHECK(message_of(jpeg) == "(decoded)");
  CHECK(image_bytes_problem(jpeg).empty());
}

// Resident kB of this process's mappings of files named `name` (from /proc/self/smaps: a mapping's
// header line starts with its address range "start-end", its fields follow as "Name: value").
long resident_kb_of_mapping(const std::string& name) {
  std::ifstream smaps("/proc/self/smaps");
  long total = 0;
  bool inside = false;
  for (std::string line; std::getline(smaps, line);) {
    const std::string first = line.substr(0, line.find(' '));
    const bool header = first.find('-') != std::string::npos &&
                        std::all_of(first.begin(), first.end(), [](char c) { return std::isxdigit(static_cast<unsigned char>(c)) || c == '-'; });
    if (header) {
      inside = line.size() >= name.size() && line.compare(line.size() - name.size(), name.size(), name) == 0;
    } else if (inside && first == "Rss:") {
      total += std::stol(line.substr(4));
    }
  }
  return total;
}

TEST_CASE("the image cache hands an image's pages back after use, and the image still reads the same") {
  TempDir dir;
  std::vector<cv::Mat> images;
  for (int i = 0; i < 6; ++i) images.push_back(pattern(120, 90, i));  // 32 kB each: several pages
  {
    ImageCacheWriter writer(dir.path(), {"a"}, 90);
    for (std::size_t i = 0; i < images.size(); ++i) writer.add(images[i], 0, "train", "p" + std::to_string(i));
    writer.finish();
  }
  const ImageCache cache(dir.path());
  double sum = 0;
  for (std::size_t i = 0; i < cache.size(); ++i) sum += cv::sum(cache.image(i))[0];
  const long touched = resident_kb_of_mapping("images.bin");
  CHECK(sum > 0);
  CHECK(touched >= 150);  // about 6 x 32 kB mapped in by the reads
  for (std::size_t i = 0; i < cache.size(); ++i) cache.release(i);
  const long released = resident_kb_of_mapping("images.bin");
  MESSAGE("resident kB of images.bin: " << touched << " after reading every image, " << released << " after release");
  CHECK(released == 0);
  // Released pages, a neighbour's shared boundary page included, fault back in with the same pixels.
  for (std::size_t i = 0; i < cache.size(); ++i) {
    CAPTURE(i);
    CHECK(same_bytes(cache.image(i), images[i]));
    cache.release(i);
  }
}

TEST_CASE("the image cache round-trips pixels through a memory mapping") {
  TempDir dir;
  std::vector<cv::Mat> images = {pattern(13, 7, 1), pattern(5, 9, 2), pattern(32, 32, 3), pattern(1, 1, 4)};
  {
    ImageCacheWriter writer(dir.path(), {"a", "b"}, 32);
    for (std::size_t i = 0; i < images.size(); ++i) writer.add(images[i], static_cast<int>(i % 2), i < 3 ? "train" : "val", "p" + std::to_string(i));
    writer.finish();
    CHECK(writer.count() == 4);
  }
  const ImageCache cache(dir.path());
  REQUIRE(cache.size() == 4);
  CHECK(cache.classes() == std::vector<std::string>{"a", "b"});
  CHECK(cache.short_side() == 32);
  for (std::size_t i = 0; i < images.size(); ++i) {
    CAPTURE(i);
    CHECK(cache.entry(i).offset % kCacheAlignment == 0);
    CHECK(cache.entry(i).label == static_cast<int>(i % 2));
    CHECK(cache.entry(i).path == "p" + std::to_string(i));
    CHECK(same_bytes(cache.image(i), images[i]));
  }
  CHECK(cache.indices_of("train") == std::vector<std::size_t>{0, 1, 2});
  CHECK(cache.indices_of("val") == std::vector<std::size_t>{3});
  CHECK(json::parse(test::read_file(dir / "cache.json"))["colour_order"] == "RGB");

  // A truncated data file is refused, not read past its end.
  fs::resize_file(dir / "images.bin", 100);
  CHECK_THROWS_WITH_AS(ImageCache(dir.path()), doctest::Contains("past the end"), std::runtime_error);
}

TEST_CASE("the cache builder decodes every split row in order, whatever the thread count") {
  TempDir dir;
  const fs::path split = make_split(dir, 9, 40, 30);
  const SplitTable table = read_split_table(split);
  REQUIRE(table.rows.size() == 18);
  CHECK(table.classes == std::vector<std::string>{"daisy", "rose"});
  fs::create_directories(dir / "one");
  fs::create_directories(dir / "many");
  const auto one = build_image_cache(table, dir / "one", {24, false, 1});
  const auto many = build_image_cache(table, dir / "many", {24, false, 3});
  CHECK(many.images == 18);
  CHECK(one.images == 18);
  CHECK(test::read_file(dir / "one/images.bin") == test::read_file(dir / "many/images.bin"));
  CHECK(test::read_file(dir / "one/index.tsv") == test::read_file(dir / "many/index.tsv"));
  const ImageCache cache(dir / "one");
  CHECK(cache.entry(0).height == 24);
  CHECK(cache.entry(0).label == 0);
  CHECK(cache.entry(17).label == 1);
  CHECK(cache.indices_of("val").size() == 2);

  // Lossless images cached at their own size come back exactly, as RGB.
  fs::create_directories(dir / "full");
  build_image_cache(table, dir / "full", {30, false, 2});
  const ImageCache full(dir / "full");
  cv::Mat expected;
  cv::cvtColor(cv::imread((table.root / table.rows[4].path).string()), expected, cv::COLOR_BGR2RGB);
  CHECK(same_bytes(full.image(4), expected));

  // A corrupt image fails the build with its path.
  test::write_file(table.root / table.rows[5].path, "not an image");
  fs::create_directories(dir / "bad");
  CHECK_THROWS_WITH_AS(build_image_cache(table, dir / "bad", {24, false, 2}), doctest::Contains(table.rows[5].path.c_str()),
                       std::runtime_error);
}

TEST_CASE("the split table reader names what breaks the contract") {
  TempDir dir;
  const fs::path split = make_split(dir, 2);
  test::write_file(split / "split.tsv", "path\tlabel\tsplit\ndaisy/0.png\ttulip\ttrain\n");
  CHECK_THROWS_WITH_AS(read_split_table(split), doctest::Contains("label 'tulip' is not in classes.txt"), std::runtime_error);
  test::write_file(split / "split.tsv", "path\tlabel\tsplit\ndaisy/0.png\tdaisy\tholdout\n");
  CHECK_THROWS_WITH_AS(read_split_table(split), doctest::Contains("split must be train, val or test"), std::runtime_error);
  test::write_file(split / "split.tsv", "path\tclass\n");
  CHECK_THROWS_WITH_AS(read_split_table(split), doctest::Contains("no 'label' column"), std::runtime_error);
}

// ---- the stage ----

TEST_CASE("the augment stage caches every image, writes previews per policy and reports metrics") {
  TempDir dir;
  const fs::path split = make_split(dir, 10, 48, 36);
  const fs::path out = dir / "out";
  fs::create_directories(out);
  const json params = stage_params("deep", {"rotate.probability=1"});
  StageReport report;
  StageContext ctx{"augment", params, {{"split", split}}, out, dir / "log.txt", dir.path(), [] { return false; }, report};
  run_augment_stage(ctx);

  const ImageCache cache(out);
  CHECK(cache.size() == 20);
  CHECK(cache.short_side() == 37);  // eval_resize for 32 = round(32 * 256 / 224)
  CHECK(cache.entry(0).height == 36);  // smaller than the short side: kept, not enlarged
  const AugmentSettings settings = AugmentSettings::read(out);
  CHECK(settings.image_size == 32);
  CHECK(settings.eval_resize == 37);
  CHECK(settings.seed == 7);
  CHECK(settings.policy.name == "deep");
  CHECK(settings.policy[Op::Rotate].probability == 1);
  for (const char* name : {"preview_light.png", "preview_medium.png", "preview_deep.png"}) {
    CAPTURE(name);
    const cv::Mat preview = cv::imread((out / name).string());
    REQUIRE_FALSE(preview.empty());
    CHECK(preview.cols == 4 * 32 + 5 * 4);
    CHECK(std::find(report.artifacts.begin(), report.artifacts.end(), name) != report.artifacts.end());
  }
  CHECK(report.metrics.at("images_cached") == 20);
  CHECK(report.metrics.at("cache_bytes").get<double>() == static_cast<double>(fs::file_size(out / "images.bin")));
  CHECK(report.metrics.at("decode_seconds").get<double>() > 0);

  // The same inputs give the same files (the stage's output is reproducible).
  const fs::path again = dir / "again";
  fs::create_directories(again);
  StageReport report2;
  StageContext ctx2{"augment", params, {{"split", split}}, again, dir / "log2.txt", dir.path(), [] { return false; }, report2};
  run_augment_stage(ctx2);
  for (const char* file : {"images.bin", "index.tsv", "augment.json", "preview_deep.png"}) {
    CHECK(test::read_file(out / file) == test::read_file(again / file));
  }
}

TEST_CASE("the augment stage stops when cancelled") {
  TempDir dir;
  const fs::path split = make_split(dir, 5);
  fs::create_directories(dir / "out");
  const json params = stage_params();
  StageReport report;
  StageContext ctx{"augment", params, {{"split", split}}, dir / "out", dir / "log.txt", dir.path(), [] { return true; }, report};
  CHECK_THROWS_AS(run_augment_stage(ctx), StageCancelled);
}

TEST_CASE("tile_grid lays tiles out row by row with gaps") {
  const cv::Mat a(2, 3, CV_8UC3, cv::Scalar(1, 2, 3)), b(2, 3, CV_8UC3, cv::Scalar(4, 5, 6));
  const cv::Mat grid = tile_grid({a, b, a}, 2, 1);
  CHECK(grid.size() == cv::Size(2 * 3 + 3, 2 * 2 + 3));
  CHECK(grid.at<cv::Vec3b>(1, 1) == cv::Vec3b(1, 2, 3));
  CHECK(grid.at<cv::Vec3b>(1, 5) == cv::Vec3b(4, 5, 6));
  CHECK(grid.at<cv::Vec3b>(0, 0) == cv::Vec3b(255, 255, 255));
}
