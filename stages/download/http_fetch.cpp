#include "stages/download/http_fetch.h"

#include <curl/curl.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <map>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <thread>

#include "pipeline/dag/stage_kind.h"
#include "pipeline/util/error.h"
#include "pipeline/util/file_lock.h"
#include "pipeline/util/fs.h"
#include "pipeline/util/sha256.h"
#include "pipeline/util/units.h"

namespace petal {

namespace fs = std::filesystem;
using nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

void global_init() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

std::string env(const char* name) {
  const char* value = std::getenv(name);
  return value ? value : "";
}

std::string lower(std::string text) {
  std::transform(text.begin(), text.end(), text.begin(), [](unsigned char c) { return std::tolower(c); });
  return text;
}

std::string trim(const std::string& text) {
  const auto first = text.find_first_not_of(" \t\r\n");
  if (first == std::string::npos) return "";
  return text.substr(first, text.find_last_not_of(" \t\r\n") - first + 1);
}

// The URL's last path segment, for log lines: "https://host/a/102flowers.tgz?x=1" -> "102flowers.tgz".
std::string name_of(const std::string& url) {
  std::string path = url.substr(0, url.find_first_of("?#"));
  if (const auto scheme = path.find("://"); scheme != std::string::npos) path = path.substr(scheme + 3);
  while (!path.empty() && path.back() == '/') path.pop_back();
  const auto slash = path.rfind('/');
  const std::string name = slash == std::string::npos ? path : path.substr(slash + 1);
  return name.empty() ? "download" : name;
}

std::string format_duration(double seconds) {
  char text[32];
  if (seconds < 1) {
    std::snprintf(text, sizeof text, "%ldms", std::lround(seconds * 1000));
    return text;
  }
  if (seconds < 10) {
    std::snprintf(text, sizeof text, "%.1fs", seconds);
    return text;
  }
  const long s = std::lround(seconds);
  if (s < 60) std::snprintf(text, sizeof text, "%lds", s);
  else if (s < 3600) std::snprintf(text, sizeof text, "%ldm%02lds", s / 60, s % 60);
  else std::snprintf(text, sizeof text, "%ldh%02ldm", s / 3600, (s % 3600) / 60);
  return text;
}

struct Unit {
  double divisor;
  const char* name;
};

Unit unit_for(double bytes) {
  if (bytes < 1e3) return {1, "B"};
  if (bytes < 1e6) return {1e3, "kB"};
  if (bytes < 1e9) return {1e6, "MB"};
  return {1e9, "GB"};
}

// "120.5/328.7 MB"
std::string format_pair(std::uint64_t done, std::uint64_t total) {
  const Unit unit = unit_for(static_cast<double>(total));
  char text[64];
  if (unit.divisor == 1) {
    std::snprintf(text, sizeof text, "%llu/%llu B", static_cast<unsigned long long>(done),
                  static_cast<unsigned long long>(total));
  } else {
    std::snprintf(text, sizeof text, "%.1f/%.1f %s", done / unit.divisor, total / unit.divisor, unit.name);
  }
  return text;
}

std::string format_rate(double bytes_per_second) {
  return format_bytes(static_cast<std::uint64_t>(std::max(0.0, bytes_per_second))) + "/s";
}

// What the cache remembers about a partial file: which URL it belongs to and the validators the
// server sent with its first byte, so a resumed request can say If-Range.
struct PartMeta {
  std::string url;
  std::string etag;
  std::string last_modified;
};

std::optional<PartMeta> read_meta(const fs::path& path) {
  std::error_code ec;
  if (!fs::exists(path, ec)) return std::nullopt;
  try {
    const json j = json::parse(read_text_file(path));
    return PartMeta{j.at("url").get<std::string>(), j.value("etag", ""), j.value("last_modified", "")};
  } catch (const std::exception&) {
    return std::nullopt;  // unreadable: treated as absent
  }
}

void remove_quietly(const fs::path& path) {
  std::error_code ec;
  fs::remove(path, ec);
}

// One HTTP request's state, shared with libcurl's callbacks (which must not throw).
struct Transfer {
  enum class Mode { Undecided, Discard, Write, WrongRange, Failed };

  const FetchOptions* options = nullptr;
  const std::string* url = nullptr;
  const std::string* name = nullptr;
  fs::path meta_path;
  std::FILE* file = nullptr;
  std::uint64_t offset = 0;  // size of the partial file when the request was made

  // headers of the latest response (reset at each status line: redirects, 100 Continue)
  long status = 0;
  std::string etag, last_modified, content_range;
  std::uint64_t content_length = 0;

  Mode mode = Mode::Undecided;  // decided at the first byte of the body
  std::uint64_t base = 0;       // bytes of the file before this response's body
  std::uint64_t total = 0;      // size of the whole file, when the server said (0: unknown)
  std::uint64_t received = 0;   // body bytes written by this request
  bool restarted = false;       // a 200 answered a ranged request: the file was emptied first
  bool cancelled = false;
  std::string failure;          // why writing failed (Mode::Failed)

  Clock::time_point last_print;
  std::uint64_t last_bytes = 0;
  double rate = 0;

  void log(const std::string& line) const {
    if (!options->log) return;
    try {
      options->log(line);
    } catch (...) {
      // a log line is not worth failing the download for
    }
  }
};

void decide(Transfer& t) {
  if (t.mode != Transfer::Mode::Undecided) return;
  if (t.status == 206) {
    unsigned long long first = 0, last = 0;
    if (std::sscanf(t.content_range.c_str(), "bytes %llu-%llu/", &first, &last) != 2 || first != t.offset) {
      t.mode = Transfer::Mode::WrongRange;
      return;
    }
    const auto slash = t.content_range.find('/');
    const std::string total = slash == std::string::npos ? "*" : trim(t.content_range.substr(slash + 1));
    t.total = total == "*" ? 0 : std::strtoull(total.c_str(), nullptr, 10);
    t.base = t.offset;
  } else if (t.status == 200) {
    if (t.offset > 0) {
      t.log("download " + *t.name + ": the server sent the whole file in answer to a Range request (it ignores "
            "ranges, or the file changed); starting again from byte 0");
      std::fflush(t.file);
      if (::ftruncate(::fileno(t.file), 0) != 0) {
        t.failure = std::strerror(errno);
        t.mode = Transfer::Mode::Failed;
        return;
      }
      t.restarted = true;
    }
    t.base = 0;
    t.total = t.content_length;
    // Written before the first byte, so a partial file always has the validators of its start.
    try {
      write_file_atomically(t.meta_path,
                            json{{"url", *t.url}, {"etag", t.etag}, {"last_modified", t.last_modified}}.dump() + "\n");
    } catch (const std::exception& e) {
      t.failure = e.what();
      t.mode = Transfer::Mode::Failed;
      return;
    }
  } else {
    t.mode = Transfer::Mode::Discard;  // an error page: never mixed into the file
    return;
  }
  t.mode = Transfer::Mode::Write;
  t.last_print = Clock::now();
  t.last_bytes = t.base;
}

std::size_t on_header(char* data, std::size_t size, std::size_t count, void* user) {
  auto* t = static_cast<Transfer*>(user);
  const std::size_t n = size * count;
  const std::string line(data, n);
  if (line.rfind("HTTP/", 0) == 0) {
    const auto space = line.find(' ');
    t->status = space == std::string::npos ? 0 : std::strtol(line.c_str() + space + 1, nullptr, 10);
    t->etag.clear();
    t->last_modified.clear();
    t->content_range.clear();
    t->content_length = 0;
    return n;
  }
  const auto colon = line.find(':');
  if (colon == std::string::npos) return n;
  const std::string key = lower(trim(line.substr(0, colon)));
  const std::string value = trim(line.substr(colon + 1));
  if (key == "etag") t->etag = value;
  else if (key == "last-modified") t->last_modified = value;
  else if (key == "content-range") t->content_range = value;
  else if (key == "content-length") t->content_length = std::strtoull(value.c_str(), nullptr, 10);
  return n;
}

std::size_t on_data(char* data, std::size_t size, std::size_t count, void* user) {
  auto* t = static_cast<Transfer*>(user);
  const std::size_t n = size * count;
  decide(*t);
  switch (t->mode) {
    case Transfer::Mode::Discard: return n;
    case Transfer::Mode::Write: break;
    default: return 0;  // aborts the transfer (CURLE_WRITE_ERROR)
  }
  if (std::fwrite(data, 1, n, t->file) != n) {
    t->failure = std::strerror(errno);
    t->mode = Transfer::Mode::Failed;
    return 0;
  }
  t->received += n;
  return n;
}

int on_progress(void* user, curl_off_t dltotal, curl_off_t dlnow, curl_off_t, curl_off_t) {
  auto* t = static_cast<Transfer*>(user);
  if (t->options->cancelled && t->options->cancelled()) {
    t->cancelled = true;
    return 1;  // non-zero aborts the transfer
  }
  if (t->mode != Transfer::Mode::Write || !t->options->log) return 0;
  const auto now = Clock::now();
  const double seconds = std::chrono::duration<double>(now - t->last_print).count();
  if (now - t->last_print < t->options->progress_interval || seconds <= 0) return 0;
  const std::uint64_t done = t->base + static_cast<std::uint64_t>(std::max<curl_off_t>(0, dlnow));
  const std::uint64_t total = dltotal > 0 ? t->base + static_cast<std::uint64_t>(dltotal) : t->total;
  const double instant = done >= t->last_bytes ? (done - t->last_bytes) / seconds : 0;
  t->rate = t->rate == 0 ? instant : 0.5 * t->rate + 0.5 * instant;  // smoothed over the last few seconds
  t->last_print = now;
  t->last_bytes = done;
  std::string line = "download " + *t->name + ": " + (total ? format_pair(done, total) : format_bytes(done)) + ", " +
                     format_rate(t->rate);
  if (total > done && t->rate > 0) line += ", ETA " + format_duration((total - done) / t->rate);
  t->log(line);
  return 0;
}

struct Attempt {
  CURLcode code = CURLE_OK;
  long status = 0;
  std::string error;
  long retry_after = 0;        // seconds the server asked us to wait (429, 503)
  Transfer::Mode mode = Transfer::Mode::Undecided;
  std::string failure;
  std::uint64_t offset = 0;
  std::uint64_t received = 0;
  std::uint64_t range_total = 0;  // a 416's "Content-Range: bytes */N"
  bool restarted = false;
  bool cancelled = false;
};

void set_tls_and_limits(CURL* curl) {
  curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 1L);
  curl_easy_setopt(curl, CURLOPT_MAXREDIRS, 10L);
#if LIBCURL_VERSION_NUM >= 0x075500
  curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(curl, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
#else
  curl_easy_setopt(curl, CURLOPT_PROTOCOLS, static_cast<long>(CURLPROTO_HTTP | CURLPROTO_HTTPS));
  curl_easy_setopt(curl, CURLOPT_REDIR_PROTOCOLS, static_cast<long>(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
  // Verification stays on (libcurl's default); only the trust store can be changed, as curl's tool allows.
  curl_easy_setopt(curl, CURLOPT_SSL_VERIFYPEER, 1L);
  curl_easy_setopt(curl, CURLOPT_SSL_VERIFYHOST, 2L);
  std::string bundle = env("CURL_CA_BUNDLE");
  if (bundle.empty()) bundle = env("SSL_CERT_FILE");
  if (!bundle.empty()) curl_easy_setopt(curl, CURLOPT_CAINFO, bundle.c_str());
  curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT, 30L);
  curl_easy_setopt(curl, CURLOPT_LOW_SPEED_LIMIT, 1024L);  // a stalled transfer times out after 60 s (and resumes)
  curl_easy_setopt(curl, CURLOPT_LOW_SPEED_TIME, 60L);
  curl_easy_setopt(curl, CURLOPT_USERAGENT, "petal/0.1");
}

Attempt attempt_once(const std::string& url, const std::string& name, const fs::path& part, const fs::path& meta_path,
                     const std::optional<PartMeta>& meta, const FetchOptions& options) {
  Transfer t;
  t.options = &options;
  t.url = &url;
  t.name = &name;
  t.meta_path = meta_path;
  std::error_code ec;
  t.offset = fs::exists(part, ec) ? fs::file_size(part, ec) : 0;
  if (ec) t.offset = 0;
  t.file = std::fopen(part.c_str(), "ab");
  if (!t.file) {
    throw PetalError("cannot write " + part.string() + ": " + std::strerror(errno) +
                         "; set PETAL_DOWNLOAD_CACHE to a writable folder",
                     {}, kExitEnvironment);
  }
  std::setvbuf(t.file, nullptr, _IOFBF, 1 << 20);

  CURL* curl = curl_easy_init();
  char error_buffer[CURL_ERROR_SIZE] = {};
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  set_tls_and_limits(curl);
  curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(curl, CURLOPT_HEADERDATA, &t);
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_data);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &t);
  curl_easy_setopt(curl, CURLOPT_XFERINFOFUNCTION, on_progress);
  curl_easy_setopt(curl, CURLOPT_XFERINFODATA, &t);
  curl_easy_setopt(curl, CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, error_buffer);
  std::string range;
  curl_slist* headers = nullptr;
  if (t.offset > 0) {
    range = std::to_string(t.offset) + "-";
    curl_easy_setopt(curl, CURLOPT_RANGE, range.c_str());
    if (meta) {
      // If-Range: "send the rest only if it is still the same file, else send it all". A weak ETag
      // may not be used there; Last-Modified may.
      const bool strong = !meta->etag.empty() && meta->etag.rfind("W/", 0) != 0;
      const std::string validator = strong ? meta->etag : meta->last_modified;
      if (!validator.empty()) headers = curl_slist_append(headers, ("If-Range: " + validator).c_str());
    }
  }
  if (headers) curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);

  Attempt a;
  a.offset = t.offset;
  a.code = curl_easy_perform(curl);
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &a.status);
  curl_off_t retry_after = 0;
  if (curl_easy_getinfo(curl, CURLINFO_RETRY_AFTER, &retry_after) == CURLE_OK) a.retry_after = static_cast<long>(retry_after);
  a.error = error_buffer[0] ? error_buffer : curl_easy_strerror(a.code);
  curl_easy_cleanup(curl);
  curl_slist_free_all(headers);

  if (a.code == CURLE_OK) decide(t);  // an empty body never reached on_data
  if (std::fclose(t.file) != 0 && t.mode == Transfer::Mode::Write) {
    t.failure = std::strerror(errno);
    t.mode = Transfer::Mode::Failed;
  }
  a.mode = t.mode;
  a.failure = t.failure;
  a.received = t.received;
  a.restarted = t.restarted;
  a.cancelled = t.cancelled || a.code == CURLE_ABORTED_BY_CALLBACK;
  if (a.status == 416) {
    const auto slash = t.content_range.find("*/");
    if (slash != std::string::npos) a.range_total = std::strtoull(t.content_range.c_str() + slash + 2, nullptr, 10);
  }
  return a;
}

bool retryable(CURLcode code, long status) {
  switch (code) {
    case CURLE_OK: return status == 408 || status == 429 || status >= 500;
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_CONNECT:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_PARTIAL_FILE:
    case CURLE_GOT_NOTHING:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM: return true;
    default: return false;
  }
}

void sleep_unless_cancelled(std::chrono::milliseconds delay, const std::function<bool()>& cancelled) {
  const auto until = Clock::now() + delay;
  while (Clock::now() < until) {
    if (cancelled && cancelled()) throw StageCancelled();
    std::this_thread::sleep_for(std::min<Clock::duration>(std::chrono::milliseconds(50), until - Clock::now()));
  }
}

// Moves a finished download out of the cache; the cache may be on another filesystem.
void move_file(const fs::path& from, const fs::path& to) {
  std::error_code ec;
  if (to.has_parent_path()) fs::create_directories(to.parent_path(), ec);
  fs::rename(from, to, ec);
  if (!ec) return;
  fs::copy_file(from, to, fs::copy_options::overwrite_existing, ec);
  if (ec) throw PetalError("cannot move " + from.string() + " to " + to.string() + ": " + ec.message(), {}, kExitEnvironment);
  remove_quietly(from);
}

}  // namespace

fs::path download_cache_dir() {
  if (const std::string dir = env("PETAL_DOWNLOAD_CACHE"); !dir.empty()) return fs::absolute(dir);
  if (const std::string dir = env("XDG_CACHE_HOME"); !dir.empty() && fs::path(dir).is_absolute()) {
    return fs::path(dir) / "petal" / "downloads";
  }
  if (const std::string home = env("HOME"); !home.empty()) return fs::path(home) / ".cache" / "petal" / "downloads";
  return fs::temp_directory_path() / ("petal-downloads-" + std::to_string(::getuid()));
}

FetchResult fetch_url(const std::string& url, const fs::path& target, const FetchOptions& options) {
  global_init();
  const std::string name = options.name.empty() ? name_of(url) : options.name;
  const auto log = [&](const std::string& line) {
    if (options.log) options.log("download " + name + ": " + line);
  };
  const fs::path cache = options.cache_dir.empty() ? download_cache_dir() : options.cache_dir;
  const fs::path partial_dir = cache / "partial";
  const fs::path verified_dir = cache / "verified";
  std::error_code ec;
  fs::create_directories(partial_dir, ec);
  if (!ec) fs::create_directories(verified_dir, ec);
  if (ec) {
    throw PetalError("cannot create the download cache " + cache.string() + ": " + ec.message() +
                         "; set PETAL_DOWNLOAD_CACHE to a writable folder",
                     {}, kExitEnvironment);
  }
  // Partial files are named by the URL: the next run for the same URL finds and resumes them.
  const std::string key = sha256_hex(url);
  const fs::path part = partial_dir / (key + ".part");
  const fs::path meta_path = partial_dir / (key + ".json");
  // Verified files are named by their checksum, not their URL: a file is reused only after its
  // content matched the checksum the caller expects (checked again on every reuse), so where it
  // came from does not matter - the official site and a mirror share one copy, and a stage re-run
  // for an unrelated parameter change, or after `petal gc`, does not transfer 330 MB again.
  // Without an expected checksum nothing is reused: the content behind a URL may change.
  const fs::path verified =
      options.expected.empty() ? fs::path() : verified_dir / (options.expected.algorithm + "-" + options.expected.hex);

  FileLock lock = FileLock::try_acquire(partial_dir / (key + ".lock"));
  if (!lock.held()) {
    log("waiting for another petal process that is downloading " + url);
    lock = FileLock::acquire(partial_dir / (key + ".lock"), options.cancelled);
    if (!lock.held()) throw StageCancelled();
  }

  FetchResult result;
  if (!verified.empty() && fs::exists(verified, ec)) {
    const FileDigests digests = digest_file(verified);
    if (digests.matches(options.expected)) {
      log("using the verified copy in " + verified.string());
      result.path = verified;
      result.in_cache = true;
      result.reused = true;
      result.sha256 = digests.sha256;
      result.md5 = digests.md5;
      result.bytes = digests.bytes;
      return result;
    }
    remove_quietly(verified);
    log("the copy in " + verified.string() + " no longer matches its " + options.expected.algorithm +
        " (damaged?); removed it");
  }

  // A partial file is resumed only when its bytes can be trusted to belong to the file the server
  // has now: If-Range (an ETag or Last-Modified) makes the server check, or the expected checksum
  // checks the result. Otherwise it starts again.
  std::optional<PartMeta> meta = read_meta(meta_path);
  if (meta && meta->url != url) {  // not this URL's bytes
    remove_quietly(part);
    remove_quietly(meta_path);
    meta.reset();
  }
  const bool has_validator = meta && (!meta->etag.empty() || !meta->last_modified.empty());
  if (fs::exists(part, ec) && !has_validator && options.expected.empty()) {
    remove_quietly(part);
    remove_quietly(meta_path);
  }
  result.resumed_from = fs::exists(part, ec) ? fs::file_size(part, ec) : 0;
  if (ec) result.resumed_from = 0;
  if (result.resumed_from > 0) {
    log("resuming at " + format_bytes(result.resumed_from) + " (kept from an interrupted transfer in " +
        part.string() + ")");
  }

  const auto start = Clock::now();
  const int attempts = std::max(1, options.attempts);
  const int max_requests = attempts * 25;  // attempts that make progress reset the count; this bounds them
  bool spliced = result.resumed_from > 0;  // the file holds bytes of more than one response
  bool clean_retry_done = false;
  int failures = 0;
  for (;;) {
    if (options.cancelled && options.cancelled()) throw StageCancelled();  // the partial file stays
    const Attempt a = attempt_once(url, name, part, meta_path, read_meta(meta_path), options);
    ++result.requests;
    if (a.cancelled) throw StageCancelled();
    if (a.mode == Transfer::Mode::Failed) {
      throw PetalError("cannot write " + part.string() + ": " + a.failure + " (download cache " + cache.string() +
                           "; set PETAL_DOWNLOAD_CACHE to a folder with enough space)",
                       {}, kExitEnvironment);
    }
    if (a.restarted) spliced = false;
    if (a.status == 206 && a.offset > 0 && a.mode == Transfer::Mode::Write) spliced = true;

    bool complete = a.code == CURLE_OK && (a.status == 200 || a.status == 206) && a.mode == Transfer::Mode::Write;
    std::string restart_reason;
    if (a.code == CURLE_OK && a.status == 416) {
      if (a.offset > 0 && a.range_total == a.offset) {
        complete = true;  // the partial file already held every byte
      } else {
        restart_reason = "the server refused the range " + std::to_string(a.offset) + "- (the file changed?)";
      }
    }
    if (a.mode == Transfer::Mode::WrongRange) restart_reason = "the server answered with another range than asked";
    if (!restart_reason.empty()) {
      remove_quietly(part);
      remove_quietly(meta_path);
      spliced = false;
      log(restart_reason + "; starting again from byte 0");
      if (++failures >= attempts) {
        throw PetalError("cannot download " + url + ": " + restart_reason, {}, kExitStageFailed);
      }
      continue;
    }

    if (complete) {
      const FileDigests digests = digest_file(part);
      if (!digests.matches(options.expected)) {
        remove_quietly(part);
        remove_quietly(meta_path);
        if (spliced && !clean_retry_done) {
          clean_retry_done = true;
          spliced = false;
          log("the resumed file does not match its " + options.expected.algorithm +
              "; discarded it, downloading again from byte 0");
          continue;
        }
        throw PetalError("checksum mismatch for " + url + ": expected " + options.expected.algorithm + " " +
                             options.expected.hex + ", got " + digests.of(options.expected.algorithm) + " (" +
                             std::to_string(digests.bytes) +
                             " bytes); the file was discarded. Check the URL or the expected checksum.",
                         {}, kExitStageFailed);
      }
      const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
      const std::uint64_t transferred = digests.bytes - std::min(digests.bytes, result.resumed_from);
      std::string line = format_bytes(digests.bytes) + " in " + format_duration(seconds);
      if (seconds > 0) line += " (" + format_rate(transferred / seconds) + ")";
      if (result.resumed_from > 0) line += ", resumed at " + format_bytes(result.resumed_from);
      if (result.requests > 1) line += ", " + std::to_string(result.requests) + " requests";
      if (!options.expected.empty()) line += ", " + options.expected.algorithm + " verified";
      log(line);
      if (!verified.empty()) {
        fs::rename(part, verified, ec);
        if (ec) {
          throw PetalError("cannot store " + verified.string() + ": " + ec.message(), {}, kExitEnvironment);
        }
        try {
          write_file_atomically(fs::path(verified.string() + ".json"),
                                json{{"url", url}, {"name", name}, {"bytes", digests.bytes}, {"sha256", digests.sha256},
                                     {"md5", digests.md5}, {"verified_ms", now_ms()}}
                                        .dump(2) +
                                    "\n");
        } catch (const std::exception&) {
          // only a description for people; the file itself is in place
        }
        result.path = verified;
        result.in_cache = true;
      } else {
        move_file(part, target);
        result.path = target;
      }
      remove_quietly(meta_path);
      result.sha256 = digests.sha256;
      result.md5 = digests.md5;
      result.bytes = digests.bytes;
      return result;
    }

    const std::string error = a.code != CURLE_OK ? a.error : "HTTP status " + std::to_string(a.status);
    if (!retryable(a.code, a.status)) {
      if (a.code == CURLE_OK) {  // the server refuses this URL now: its partial file is of no use
        remove_quietly(part);
        remove_quietly(meta_path);
      }
      std::string hint;
      if (a.code == CURLE_PEER_FAILED_VERIFICATION || a.code == CURLE_SSL_CACERT_BADFILE) {
        hint = " (to trust another certificate authority, e.g. a company proxy's, set CURL_CA_BUNDLE or "
               "SSL_CERT_FILE to its bundle; verification stays on)";
      }
      throw PetalError("cannot download " + url + ": " + error + hint, {}, kExitStageFailed);
    }
    failures = a.received > 0 ? 1 : failures + 1;
    const std::uint64_t have = fs::exists(part, ec) ? fs::file_size(part, ec) : 0;
    if (failures >= attempts || result.requests >= max_requests) {
      std::string kept;
      if (have > 0 && (!options.expected.empty() || read_meta(meta_path))) {
        kept = "; the " + format_bytes(have) + " received are kept in " + part.string() +
               " and the next run resumes from there";
      }
      throw PetalError("cannot download " + url + ": " + error + " (after " + std::to_string(result.requests) +
                           " attempts" + kept + ")",
                       {}, kExitStageFailed);
    }
    auto delay = options.backoff * (1LL << std::min(failures - 1, 10));
    delay = std::min<std::chrono::milliseconds>(delay, std::chrono::seconds(30));
    if (a.retry_after > 0) {
      delay = std::max<std::chrono::milliseconds>(delay, std::chrono::seconds(std::min(a.retry_after, 120L)));
    }
    log(error + (have > 0 ? " at " + format_bytes(have) : std::string()) + "; retrying in " +
        format_duration(std::chrono::duration<double>(delay).count()));
    sleep_unless_cancelled(delay, options.cancelled);
  }
}

namespace {

size_t collect_validator_header(char* data, size_t size, size_t count, void* user) {
  auto& fields = *static_cast<std::map<std::string, std::string>*>(user);
  std::string line(data, size * count);
  const auto colon = line.find(':');
  if (colon == std::string::npos) {
    if (line.rfind("HTTP/", 0) == 0) fields.clear();  // a redirect's headers are not the file's
    return size * count;
  }
  std::string name = line.substr(0, colon);
  for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  std::string value = line.substr(colon + 1);
  while (!value.empty() && (value.back() == '\r' || value.back() == '\n' || value.back() == ' ')) value.pop_back();
  while (!value.empty() && value.front() == ' ') value.erase(0, 1);
  if (name == "etag" || name == "last-modified" || name == "content-length") fields[name] = value;
  return size * count;
}

}  // namespace

std::string remote_validator(const std::string& url) {
  global_init();
  CURL* curl = curl_easy_init();
  if (!curl) throw PetalError("cannot start an HTTP request (libcurl)", {}, kExitEnvironment);
  std::map<std::string, std::string> fields;
  set_tls_and_limits(curl);
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_NOBODY, 1L);
  curl_easy_setopt(curl, CURLOPT_TIMEOUT, 60L);
  curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, collect_validator_header);
  curl_easy_setopt(curl, CURLOPT_HEADERDATA, &fields);
  const CURLcode code = curl_easy_perform(curl);
  long status = 0;
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
  curl_easy_cleanup(curl);
  if (code != CURLE_OK) {
    throw PetalError("cannot reach " + url + ": " + curl_easy_strerror(code) + " (check the URL and the network)", {},
                     kExitEnvironment);
  }
  if (status >= 400) throw PetalError(url + " answered HTTP " + std::to_string(status), {}, kExitEnvironment);
  std::string validator;
  for (const char* name : {"etag", "last-modified", "content-length"}) {
    if (const auto found = fields.find(name); found != fields.end()) {
      if (!validator.empty()) validator += ";";
      validator += std::string(name == std::string("content-length") ? "length" : name) + "=" + found->second;
    }
  }
  return validator;
}

}  // namespace petal
