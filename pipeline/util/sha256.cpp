#include "pipeline/util/sha256.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "pipeline/util/error.h"

namespace petal {

MessageDigest::MessageDigest(Algorithm algorithm) : ctx_(EVP_MD_CTX_new()) {
  const EVP_MD* md = algorithm == Algorithm::Md5 ? EVP_md5() : EVP_sha256();
  if (!ctx_ || EVP_DigestInit_ex(static_cast<EVP_MD_CTX*>(ctx_), md, nullptr) != 1) {
    EVP_MD_CTX_free(static_cast<EVP_MD_CTX*>(ctx_));
    throw std::runtime_error(algorithm == Algorithm::Md5 ? "OpenSSL: cannot initialise MD5 (is OpenSSL in FIPS-only mode?)"
                                                         : "OpenSSL: cannot initialise SHA-256");
  }
}

MessageDigest::~MessageDigest() { EVP_MD_CTX_free(static_cast<EVP_MD_CTX*>(ctx_)); }

MessageDigest& MessageDigest::update(const void* data, std::size_t size) {
  EVP_DigestUpdate(static_cast<EVP_MD_CTX*>(ctx_), data, size);
  return *this;
}

std::string MessageDigest::hex_digest() {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  EVP_DigestFinal_ex(static_cast<EVP_MD_CTX*>(ctx_), digest, &length);
  static const char* hex = "0123456789abcdef";
  std::string out(length * 2, '0');
  for (unsigned int i = 0; i < length; ++i) {
    out[2 * i] = hex[digest[i] >> 4];
    out[2 * i + 1] = hex[digest[i] & 15];
  }
  return out;
}

std::string sha256_hex(std::string_view data) { return Sha256().update(data).hex_digest(); }

std::uint64_t stream_file(const std::filesystem::path& path,
                          const std::function<void(const char* data, std::size_t size)>& sink) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    throw PetalError("cannot read " + path.string() + ": " + std::strerror(errno), {}, kExitEnvironment);
  }
  std::vector<char> buffer(1 << 20);
  std::uint64_t total = 0;
  for (;;) {
    const ssize_t n = ::read(fd, buffer.data(), buffer.size());
    if (n == 0) break;
    if (n < 0) {
      if (errno == EINTR) continue;
      const int saved = errno;
      ::close(fd);
      throw PetalError("cannot read " + path.string() + ": " + std::strerror(saved), {}, kExitEnvironment);
    }
    sink(buffer.data(), static_cast<std::size_t>(n));
    total += static_cast<std::uint64_t>(n);
  }
  ::close(fd);
  return total;
}

std::string sha256_file(const std::filesystem::path& path) {
  Sha256 hash;
  stream_file(path, [&](const char* data, std::size_t size) { hash.update(data, size); });
  return hash.hex_digest();
}

}  // namespace petal
