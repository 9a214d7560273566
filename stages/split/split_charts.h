#pragma once
#include <filesystem>
#include <map>
#include <string>
#include <vector>

namespace petal {

// counts[class][split] as a horizontal stacked bar chart (train, val, test), written as PNG.
void write_class_distribution(const std::map<std::string, std::map<std::string, int>>& counts,
                              const std::filesystem::path& png);

// One row per class: its name and up to `per_class` thumbnails of its images.
void write_sample_grid(const std::map<std::string, std::vector<std::filesystem::path>>& samples, int per_class,
                       const std::filesystem::path& png);

}  // namespace petal
