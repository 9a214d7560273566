#pragma once
#include <cstddef>
#include <filesystem>
#include <opencv2/core.hpp>
#include <vector>

#include "stages/augment/augment_config.h"
#include "stages/augment/image_cache.h"

namespace petal::augment {

// Tiles equally sized uint8 RGB images row by row, `columns` per row, with `gap` white pixels
// between and around the tiles. An empty list gives an empty image.
cv::Mat tile_grid(const std::vector<cv::Mat>& tiles, int columns, int gap);

// Writes a uint8 RGB image as PNG (OpenCV writes BGR, so the channels are swapped on the way).
void write_png_rgb(const std::filesystem::path& file, const cv::Mat& rgb);

// Up to `count` training samples for previews: a seeded shuffle of the training split (all
// entries if it is empty), so the samples span the classes and are the same for every policy.
std::vector<std::size_t> preview_indices(const ImageCache& cache, std::uint64_t seed, std::size_t count);

// A 4-column grid of those samples as the loader would augment them in epoch 0 under `policy`,
// each tile at most 160 pixels wide.
cv::Mat policy_preview(const ImageCache& cache, const std::vector<std::size_t>& indices, const Policy& policy,
                       const AugmentSettings& settings);

}  // namespace petal::augment
