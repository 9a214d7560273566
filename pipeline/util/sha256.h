#pragma once
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

namespace petal {

// Incremental SHA-256 (OpenSSL). Every persisted key and digest in petal is SHA-256 in lowercase
// hex: stable across compilers, runs and machines (unlike std::hash).
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;

  Sha256& update(const void* data, std::size_t size);
  Sha256& update(std::string_view text) { return update(text.data(), text.size()); }
  std::string hex_digest();  // finishes the hash; the object must not be updated afterwards

 private:
  void* ctx_;
};

std::string sha256_hex(std::string_view data);
// Streams the file in blocks; throws PetalError (exit 3) naming the file if it cannot be read.
std::string sha256_file(const std::filesystem::path& path);

}  // namespace petal
