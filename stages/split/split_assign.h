#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace petal {

struct SplitItem {
  std::string path;
  std::string label;
  std::string sha256;
  std::string split;     // given (oxford102, folders) or assigned (stratified)
  std::string excluded;  // why it is left out, "" if kept
};

struct DuplicateReport {
  std::vector<std::vector<std::string>> groups;     // paths of identical images with one label
  std::vector<std::vector<std::string>> conflicts;  // paths of identical images with different labels
  std::size_t cross_split = 0;  // groups a given split spreads over several splits (reported only)
};

// Finds identical images (same sha256 among items not excluded). Conflicting labels are resolved by
// `policy`: "drop" excludes every copy, "keep-first" keeps the first by path and excludes the rest.
DuplicateReport resolve_duplicates(std::vector<SplitItem>& items, const std::string& policy);

// Assigns train/val/test to the kept items: identical images move together, classes keep their
// proportions when `stratify`, and the shuffle is SplitMix64 from `seed` (the same on every
// platform, unlike std::shuffle).
void assign_stratified(std::vector<SplitItem>& items, const std::vector<double>& ratios, std::uint64_t seed,
                       bool stratify);

}  // namespace petal
