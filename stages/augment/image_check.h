#pragma once
#include <filesystem>
#include <string>
#include <vector>

namespace petal {

// Why these bytes are no usable image file before any decoding ("" when they may be): empty, or a
// JPEG/PNG without its end marker. A truncated download decodes "successfully" to a half-grey
// picture, and OpenCV asserts on an empty buffer, so every reader of images (split, augment's
// decoder, `petal predict`) asks this first.
std::string image_bytes_problem(const std::vector<unsigned char>& data);

// Why an image file cannot be trained on ("" when it is fine): unreadable, image_bytes_problem,
// not decodable by OpenCV, or smaller than 8x8.
std::string check_image(const std::filesystem::path& file);

}  // namespace petal
