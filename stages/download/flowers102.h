#pragma once
#include <string>
#include <vector>

#include "stages/download/checksum.h"

namespace petal {

// The Oxford 102 Category Flower dataset (https://www.robots.ox.ac.uk/~vgg/data/flowers/102/):
// 102flowers.tgz (8,189 images as jpg/image_NNNNN.jpg, about 330 MB), imagelabels.mat (labels
// 1..102) and setid.mat (the official trnid/valid/tstid split), with their published checksums.
extern const char* const kFlowers102Url;  // the official base URL

struct Flowers102File {
  std::string name;       // "102flowers.tgz", "imagelabels.mat", "setid.mat"
  std::string url;        // <base>/<name>
  std::string local;      // instead of url: the file in a local mirror folder ("" = use url)
  Checksum checksum;      // the published one unless overridden
};

// Where the files come from: the `mirror` parameter if set, else $PETAL_DATA_MIRROR if set, else
// the official site. A mirror is a base URL (http, https) or a local folder (an absolute path or a
// file:// URL) holding the three files under their official names.
std::string flowers102_base(const std::string& mirror_param);

// The three files (small ones first), after the mirror and `checksums` overrides. Entries of
// `checksums` read "<file>=sha256:<hex>" or "<file>=md5:<hex>"; they must be valid (see below).
std::vector<Flowers102File> flowers102_files(const std::string& mirror_param, const std::vector<std::string>& checksums);

// Complaints about a `checksums` list (for StageKind::check), one per bad entry.
std::vector<std::string> check_flowers102_checksums(const std::vector<std::string>& checksums);
// Complaint about a `mirror` value ("" when fine).
std::string check_flowers102_mirror(const std::string& mirror);

}  // namespace petal
