#pragma once
#include <cstddef>
#include <filesystem>
#include <functional>

namespace petal {

// Extracts a .tar, .tar.gz/.tgz, .tar.bz2, .tar.xz or .zip archive into `destination`. Refuses,
// with a PetalError naming the entry, any entry that would land outside it: absolute paths, `..`
// components, and symbolic or hard links pointing outside. Returns the number of files written.
// Polls `cancelled` between entries and throws StageCancelled when it turns true.
std::size_t extract_archive(const std::filesystem::path& archive, const std::filesystem::path& destination,
                            const std::function<bool()>& cancelled = {});

}  // namespace petal
