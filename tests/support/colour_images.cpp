#include "tests/support/colour_images.h"

#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include <string>

namespace petal::test {

void make_colour_images(const std::filesystem::path& root, int per_class, std::uint64_t seed, bool class_folders) {
  const char* names[] = {"red", "green", "blue"};
  cv::RNG rng(seed);
  for (int c = 0; c < 3; ++c) {
    const std::filesystem::path folder = class_folders ? root / names[c] : root;
    std::filesystem::create_directories(folder);
    for (int i = 0; i < per_class; ++i) {
      cv::Mat image(48, 40 + 4 * (i % 3), CV_8UC3);
      rng.fill(image, cv::RNG::UNIFORM, 0, 120);
      cv::Scalar colour(0, 0, 0);
      colour[2 - c] = 200 + rng.uniform(0, 55);  // OpenCV stores BGR
      cv::circle(image, {rng.uniform(14, 26), rng.uniform(14, 30)}, rng.uniform(8, 14), colour, cv::FILLED);
      const std::string ext = i % 2 ? ".jpg" : ".png";
      cv::imwrite((folder / (std::string(names[c]) + std::to_string(i) + ext)).string(), image);
    }
  }
}

}  // namespace petal::test
