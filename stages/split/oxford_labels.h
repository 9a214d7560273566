#pragma once
#include <filesystem>
#include <map>
#include <string>

namespace petal {

// The official Oxford-102 metadata: imagelabels.mat ("labels", 1..102 for images 1..8189) and
// setid.mat ("trnid", "valid", "tstid": image numbers of each split), read with matio.
struct OxfordSplit {
  std::map<int, int> label_of;           // image number -> class 1..102
  std::map<int, std::string> split_of;   // image number -> train | val | test
};

// Throws PetalError naming the file and variable when a file is missing or malformed.
OxfordSplit read_oxford_split(const std::filesystem::path& labels_mat, const std::filesystem::path& setid_mat);

}  // namespace petal
