#pragma once
#include <cstdint>
#include <filesystem>

namespace petal::test {

// Three classes told apart by colour (red, green, blue discs on noise), `per_class` images each,
// PNG and JPEG alternating, in <root>/<class>/ (or all in <root> without class folders).
void make_colour_images(const std::filesystem::path& root, int per_class, std::uint64_t seed, bool class_folders = true);

}  // namespace petal::test
