#pragma once
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

#include "pipeline/util/sha256.h"  // MessageDigest, Md5

namespace petal {

// MD5 verifies files whose publishers give only an MD5 (the Oxford-102 .mat files); it is fine for
// detecting corrupt or wrong downloads against a published value. petal's own keys stay SHA-256.
std::string md5_hex(std::string_view data);

// An expected checksum: algorithm ("sha256" or "md5") and lowercase hex digest. Empty = not checked.
struct Checksum {
  std::string algorithm;
  std::string hex;

  bool empty() const { return hex.empty(); }
  std::string to_string() const { return algorithm + ":" + hex; }  // "sha256:2d01…"
};

// Parses "sha256:<64 hex>" or "md5:<32 hex>" (hex in either case; stored lowercase). Returns an
// empty string on success, else the complaint ("must be sha256:<64 hex digits> or md5:<32 hex digits>").
std::string parse_checksum(std::string_view text, Checksum* out);

// SHA-256 and MD5 of a file in one pass.
struct FileDigests {
  std::string sha256;
  std::string md5;
  std::uint64_t bytes = 0;

  const std::string& of(const std::string& algorithm) const { return algorithm == "md5" ? md5 : sha256; }
  bool matches(const Checksum& expected) const { return expected.empty() || of(expected.algorithm) == expected.hex; }
};

// Streams the file in blocks; throws PetalError (exit 3) naming the file if it cannot be read.
FileDigests digest_file(const std::filesystem::path& path);
std::string md5_file(const std::filesystem::path& path);

}  // namespace petal
