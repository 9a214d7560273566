#include "stages/augment/preview_grid.h"

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include <algorithm>
#include <stdexcept>

#include "stages/augment/augment_pipeline.h"
#include "stages/augment/geometry_ops.h"
#include "stages/augment/rng.h"

namespace petal::augment {

cv::Mat tile_grid(const std::vector<cv::Mat>& tiles, int columns, int gap) {
  if (tiles.empty()) return cv::Mat();
  const int w = tiles[0].cols, h = tiles[0].rows;
  const int n = static_cast<int>(tiles.size());
  const int cols = std::min(columns, n), rows = (n + columns - 1) / columns;
  cv::Mat grid(rows * h + (rows + 1) * gap, cols * w + (cols + 1) * gap, CV_8UC3, cv::Scalar(255, 255, 255));
  for (int i = 0; i < n; ++i) {
    if (tiles[i].size() != tiles[0].size() || tiles[i].type() != CV_8UC3) {
      throw std::invalid_argument("tile_grid: tiles must be uint8 RGB images of one size");
    }
    const int r = i / columns, c = i % columns;
    tiles[i].copyTo(grid(cv::Rect(gap + c * (w + gap), gap + r * (h + gap), w, h)));
  }
  return grid;
}

void write_png_rgb(const std::filesystem::path& file, const cv::Mat& rgb) {
  cv::Mat bgr;
  cv::cvtColor(rgb, bgr, cv::COLOR_RGB2BGR);
  if (!cv::imwrite(file.string(), bgr)) throw std::runtime_error("cannot write " + file.string());
}

std::vector<std::size_t> preview_indices(const ImageCache& cache, std::uint64_t seed, std::size_t count) {
  std::vector<std::size_t> pool = cache.indices_of("train");
  if (pool.empty()) {
    for (std::size_t i = 0; i < cache.size(); ++i) pool.push_back(i);
  }
  Rng rng(stream_seed(seed, 0, 0, static_cast<std::uint64_t>(Stream::Preview)));
  for (std::size_t i = pool.size(); i > 1; --i) std::swap(pool[i - 1], pool[rng.below(i)]);
  pool.resize(std::min(count, pool.size()));
  return pool;
}

cv::Mat policy_preview(const ImageCache& cache, const std::vector<std::size_t>& indices, const Policy& policy,
                       const AugmentSettings& settings) {
  const int tile = std::min(settings.image_size, 160);
  std::vector<cv::Mat> tiles;
  for (std::size_t index : indices) {
    const cv::Mat sample = augment_sample(cache.image(index), policy, SampleKey{settings.seed, 0, index},
                                          settings.image_size, settings.eval_resize);
    tiles.push_back(resize_to(sample, cv::Size(tile, tile)));
  }
  return tile_grid(tiles, 4, 4);
}

}  // namespace petal::augment
