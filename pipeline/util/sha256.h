#pragma once
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <string_view>

namespace petal {

// An incremental OpenSSL message digest, hex-encoded. Every persisted key and digest in petal is
// SHA-256 in lowercase hex: stable across compilers, runs and machines (unlike std::hash). MD5 is
// there only to verify files published with MD5 checksums (Oxford-102's .mat files).
class MessageDigest {
 public:
  enum class Algorithm { Sha256, Md5 };
  explicit MessageDigest(Algorithm algorithm);
  ~MessageDigest();
  MessageDigest(const MessageDigest&) = delete;
  MessageDigest& operator=(const MessageDigest&) = delete;

  MessageDigest& update(const void* data, std::size_t size);
  MessageDigest& update(std::string_view text) { return update(text.data(), text.size()); }
  std::string hex_digest();  // finishes the hash; the object must not be updated afterwards

 private:
  void* ctx_;
};

class Sha256 : public MessageDigest {
 public:
  Sha256() : MessageDigest(Algorithm::Sha256) {}
};

class Md5 : public MessageDigest {
 public:
  Md5() : MessageDigest(Algorithm::Md5) {}
};

// Streams a file through `sink` in blocks; returns its size. Throws PetalError (exit 3) naming the
// file if it cannot be read.
std::uint64_t stream_file(const std::filesystem::path& path,
                          const std::function<void(const char* data, std::size_t size)>& sink);

std::string sha256_hex(std::string_view data);
// Streams the file in blocks; throws PetalError (exit 3) naming the file if it cannot be read.
std::string sha256_file(const std::filesystem::path& path);

}  // namespace petal
