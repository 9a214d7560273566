#pragma once
#include <filesystem>
#include <string>

namespace petal {

// Why an image file cannot be trained on ("" when it is fine): unreadable, empty, not a complete
// JPEG/PNG (a truncated download decodes "successfully" to a half-grey picture, so the container's
// end marker is checked too), or not decodable by OpenCV.
std::string check_image(const std::filesystem::path& file);

}  // namespace petal
