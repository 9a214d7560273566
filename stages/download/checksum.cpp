#include "stages/download/checksum.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <vector>

#include "pipeline/util/error.h"
#include "pipeline/util/sha256.h"

namespace petal {

std::string md5_hex(std::string_view data) { return Md5().update(data).hex_digest(); }

std::string parse_checksum(std::string_view text, Checksum* out) {
  static const std::string complaint = "must be sha256:<64 hex digits> or md5:<32 hex digits>";
  const auto colon = text.find(':');
  if (colon == std::string_view::npos) return complaint;
  const std::string algorithm(text.substr(0, colon));
  std::string hex(text.substr(colon + 1));
  std::transform(hex.begin(), hex.end(), hex.begin(), [](unsigned char c) { return std::tolower(c); });
  const std::size_t digits = algorithm == "sha256" ? 64 : algorithm == "md5" ? 32 : 0;
  if (digits == 0 || hex.size() != digits || hex.find_first_not_of("0123456789abcdef") != std::string::npos) {
    return complaint;
  }
  if (out) *out = Checksum{algorithm, hex};
  return "";
}

FileDigests digest_file(const std::filesystem::path& path) {
  Sha256 sha;
  Md5 md5;
  FileDigests result;
  result.bytes = stream_file(path, [&](const char* data, std::size_t size) {
    sha.update(data, size);
    md5.update(data, size);
  });
  result.sha256 = sha.hex_digest();
  result.md5 = md5.hex_digest();
  return result;
}

std::string md5_file(const std::filesystem::path& path) { return digest_file(path).md5; }

}  // namespace petal
