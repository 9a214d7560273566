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
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw PetalError("cannot read " + path.string() + ": " + std::strerror(errno), {}, kExitEnvironment);
  Sha256 sha;
  Md5 md5;
  FileDigests result;
  std::vector<char> buffer(1 << 20);
  for (;;) {
    const ssize_t n = ::read(fd, buffer.data(), buffer.size());
    if (n == 0) break;
    if (n < 0) {
      if (errno == EINTR) continue;
      const int saved = errno;
      ::close(fd);
      throw PetalError("cannot read " + path.string() + ": " + std::strerror(saved), {}, kExitEnvironment);
    }
    sha.update(buffer.data(), static_cast<std::size_t>(n));
    md5.update(buffer.data(), static_cast<std::size_t>(n));
    result.bytes += static_cast<std::uint64_t>(n);
  }
  ::close(fd);
  result.sha256 = sha.hex_digest();
  result.md5 = md5.hex_digest();
  return result;
}

std::string md5_file(const std::filesystem::path& path) { return digest_file(path).md5; }

}  // namespace petal
