#pragma once
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>

#include "stages/download/checksum.h"

namespace petal {

// The download cache: where partial downloads wait to be resumed and verified files wait to be
// reused, across runs and projects. It lives outside petal's stage cache on purpose: a failed
// stage's temp folder is discarded, but a 330 MB transfer cut off at 90% must survive it.
//   $PETAL_DOWNLOAD_CACHE if set, else $XDG_CACHE_HOME/petal/downloads, else ~/.cache/petal/downloads.
// Layout:
//   partial/<sha256 of the URL>.part   bytes received so far (resumed with an HTTP Range request)
//   partial/<sha256 of the URL>.json   the URL and its validators (ETag, Last-Modified) for If-Range
//   partial/<sha256 of the URL>.lock   held while a petal process downloads that URL
//   verified/<algorithm>-<hex>         a complete file that matched its expected checksum
//   verified/<algorithm>-<hex>.json    where it came from (for people looking at the folder)
// Everything in it can be deleted at any time (it is re-downloaded when needed).
std::filesystem::path download_cache_dir();

struct FetchOptions {
  Checksum expected;                                 // empty: not verified, and not kept for reuse
  int attempts = 4;                                  // consecutive attempts that receive nothing
  std::chrono::milliseconds backoff{250};            // before the first retry; doubles each time (<= 30 s)
  std::chrono::milliseconds progress_interval{1000}; // at most one progress line per interval
  std::filesystem::path cache_dir;                   // "" = download_cache_dir()
  std::string name;                                  // how log lines name the file ("" = from the URL)
  std::function<void(const std::string&)> log;       // progress, retry and resume lines (one per call)
  std::function<bool()> cancelled;
};

struct FetchResult {
  std::filesystem::path path;      // the complete file
  bool in_cache = false;           // `path` is the verified copy in the download cache: read it, never modify it
  bool reused = false;             // nothing was transferred: a verified copy from an earlier run
  std::string sha256;
  std::string md5;
  std::uint64_t bytes = 0;
  std::uint64_t resumed_from = 0;  // bytes kept from an interrupted transfer (0: from the start)
  int requests = 0;                // HTTP requests made
};

// Downloads `url` (http or https only). TLS verification stays on; a custom CA bundle can be named
// with $CURL_CA_BUNDLE or $SSL_CERT_FILE. libcurl honours the proxy variables http_proxy (lower
// case only), https_proxy / HTTPS_PROXY, all_proxy and no_proxy.
//
// With an expected checksum, a verified copy already in the download cache is reused (after
// checking it again) and a new download is kept there; the result then points into the cache.
// Without one, the file is moved to `target`, which the caller owns.
//
// Bytes are written to the cache's partial file as they arrive. Connection errors, timeouts, 408,
// 429 and 5xx are retried with exponential backoff (honouring Retry-After), continuing from the
// last byte received with `Range: bytes=N-` (and If-Range when the server gave a validator); an
// attempt that received data restarts the count of attempts. A server that answers a ranged request
// with 200 (no Range support, or the file changed) is taken from byte 0. A partial file survives
// the end of a run (failure or interruption) and the next run for the same URL resumes it - when
// the server gave an ETag or Last-Modified, or a checksum will verify the result. A checksum
// mismatch deletes the file (after a resumed transfer, one clean download from byte 0 is tried
// first) and throws PetalError naming the URL; a mismatching file is never used or kept.
FetchResult fetch_url(const std::string& url, const std::filesystem::path& target, const FetchOptions& options);

// The remote file's identity without downloading it (one HTTP HEAD request, same TLS and proxy
// rules as fetch_url): "etag=<ETag>;last-modified=<date>;length=<bytes>" from what the server
// sends. Equal strings mean an unchanged file as far as the server says. Throws PetalError naming
// the URL when it cannot be reached or answers with an error status.
std::string remote_validator(const std::string& url);

}  // namespace petal
