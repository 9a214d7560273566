#pragma once
#include <cstddef>
#include <filesystem>
#include <opencv2/core.hpp>
#include <optional>
#include <vector>

namespace petal::augment {

// The file's bytes; throws std::runtime_error naming the file if it cannot be read.
std::vector<unsigned char> read_file_bytes(const std::filesystem::path& path);

// A JPEG's width and height from its frame header, without decoding; nullopt for anything else.
std::optional<cv::Size> jpeg_size(const unsigned char* data, std::size_t size);

// Decodes an encoded image (any format OpenCV reads) to uint8 RGB HWC and resizes it so the short
// side is `short_side`; a smaller image keeps its size unless `upscale`. EXIF orientation is
// applied. JPEGs large enough are decoded by libjpeg at 1/2, 1/4 or 1/8 scale (DCT scaling), much
// faster than a full decode, then resized the rest of the way; the reduced decode is never
// smaller than `short_side`. Throws std::runtime_error if the data cannot be decoded.
cv::Mat decode_image(const std::vector<unsigned char>& bytes, int short_side, bool upscale);

}  // namespace petal::augment
