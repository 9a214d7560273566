#pragma once
#include <filesystem>
#include <functional>
#include <string>

namespace petal {

struct FetchOptions {
  std::string expected_sha256;  // "" = not checked
  int attempts = 4;             // connection errors, timeouts, 429 and 5xx are retried with backoff
  std::function<bool()> cancelled;
};

struct FetchResult {
  std::string sha256;
  std::uint64_t bytes = 0;
};

// Downloads `url` to `target` (via a sibling .part file renamed into place only when complete and
// verified). TLS verification stays on; libcurl honours http_proxy/https_proxy/no_proxy. Throws
// PetalError naming the URL on HTTP errors and on a checksum mismatch (the bad file is deleted).
FetchResult fetch_url(const std::string& url, const std::filesystem::path& target, const FetchOptions& options);

}  // namespace petal
