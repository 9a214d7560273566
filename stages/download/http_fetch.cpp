#include "stages/download/http_fetch.h"

#include <curl/curl.h>

#include <chrono>
#include <cstdio>
#include <mutex>
#include <thread>

#include "pipeline/dag/stage_kind.h"
#include "pipeline/util/error.h"
#include "pipeline/util/sha256.h"

namespace petal {

namespace {

struct Sink {
  std::FILE* file = nullptr;
  Sha256* hash = nullptr;
  std::uint64_t bytes = 0;
  const std::function<bool()>* cancelled = nullptr;
};

std::size_t on_data(char* data, std::size_t size, std::size_t count, void* user) {
  auto* sink = static_cast<Sink*>(user);
  const std::size_t n = size * count;
  if (std::fwrite(data, 1, n, sink->file) != n) return 0;
  sink->hash->update(data, n);
  sink->bytes += n;
  return n;
}

int on_progress(void* user, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
  auto* sink = static_cast<Sink*>(user);
  return (*sink->cancelled && (*sink->cancelled)()) ? 1 : 0;  // non-zero aborts the transfer
}

void global_init() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

bool retryable(CURLcode code, long status) {
  if (code == CURLE_COULDNT_CONNECT || code == CURLE_OPERATION_TIMEDOUT || code == CURLE_RECV_ERROR ||
      code == CURLE_SEND_ERROR || code == CURLE_PARTIAL_FILE || code == CURLE_GOT_NOTHING) {
    return true;
  }
  return code == CURLE_OK && (status == 429 || status >= 500);
}

}  // namespace

FetchResult fetch_url(const std::string& url, const std::filesystem::path& target, const FetchOptions& options) {
  global_init();
  const std::filesystem::path part = target.string() + ".part";
  std::string last_error;
  for (int attempt = 1; attempt <= std::max(1, options.attempts); ++attempt) {
    if (attempt > 1) {
      const auto delay = std::chrono::milliseconds(250 << std::min(attempt - 2, 5));
      std::this_thread::sleep_for(delay);
    }
    if (options.cancelled && options.cancelled()) throw StageCancelled();
    std::FILE* file = std::fopen(part.c_str(), "wb");
    if (!file) throw PetalError("cannot create " + part.string(), {}, kExitEnvironment);
    Sha256 hash;
    Sink sink{file, &hash, 0, &options.cancelled};
    CURL* curl = curl_easy_init();
    char error_buffer[CURL_ERROR_SIZE] = {};
    curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
    curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(curl, CURLOPT_MAXREDIRS, 10L);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &sink);
    curl_easy_setopt(curl, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(curl, CURLOPT_XFERINFODATA, &sink);
    curl_easy_setopt(curl, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, error_buffer);
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT, 30L);
    curl_easy_setopt(curl, CURLOPT_LOW_SPEED_LIMIT, 1024L);  // abort a stalled transfer after 60 s
    curl_easy_setopt(curl, CURLOPT_LOW_SPEED_TIME, 60L);
    curl_easy_setopt(curl, CURLOPT_USERAGENT, "petal/0.1");
    const CURLcode code = curl_easy_perform(curl);
    long status = 0;
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(curl);
    std::fclose(file);

    if (code == CURLE_ABORTED_BY_CALLBACK) {
      std::remove(part.c_str());
      throw StageCancelled();
    }
    if (code == CURLE_OK && status >= 200 && status < 300) {
      FetchResult result{hash.hex_digest(), sink.bytes};
      if (!options.expected_sha256.empty() && result.sha256 != options.expected_sha256) {
        std::remove(part.c_str());
        throw PetalError("checksum mismatch for " + url + ": expected sha256 " + options.expected_sha256 + ", got " +
                             result.sha256 + " (" + std::to_string(result.bytes) +
                             " bytes); the file was discarded. Check the URL or the expected checksum.",
                         {}, kExitStageFailed);
      }
      std::filesystem::rename(part, target);
      return result;
    }
    std::remove(part.c_str());
    last_error = code != CURLE_OK ? std::string(error_buffer[0] ? error_buffer : curl_easy_strerror(code))
                                  : "HTTP status " + std::to_string(status);
    if (!retryable(code, status)) break;
  }
  throw PetalError("cannot download " + url + ": " + last_error, {}, kExitStageFailed);
}

}  // namespace petal
