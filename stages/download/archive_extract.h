#pragma once
#include <cstddef>
#include <filesystem>

namespace petal {

// Extracts a .tar, .tar.gz/.tgz, .tar.bz2, .tar.xz or .zip archive into `destination`. Refuses,
// with a PetalError naming the entry, any entry that would land outside it: absolute paths, `..`
// components, and symbolic or hard links pointing outside. Returns the number of files written.
std::size_t extract_archive(const std::filesystem::path& archive, const std::filesystem::path& destination);

}  // namespace petal
