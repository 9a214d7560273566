#pragma once
#include <atomic>
#include <condition_variable>
#include <filesystem>
#include <map>
#include <mutex>
#include <string>

#include "pipeline/util/error.h"

namespace petal {

// How to reach a tracking server. Credentials come from MLflow's own environment variables and
// never appear in messages, logs or the spool.
struct HttpSettings {
  std::string base_url;  // scheme://host:port[/prefix], no trailing slash
  std::string username;  // MLFLOW_TRACKING_USERNAME (basic auth, with password)
  std::string password;  // MLFLOW_TRACKING_PASSWORD
  std::string token;     // MLFLOW_TRACKING_TOKEN (bearer)
  bool verify_tls = true;  // MLFLOW_TRACKING_INSECURE_TLS=true turns it off, as in MLflow
  // Connection errors, 429 and 5xx are retried with backoff and jitter (or the server's
  // Retry-After), as long as all attempts together stay within `retry_budget_ms`. A time-out is not
  // retried: a server silent for a whole deadline is treated as away.
  int max_attempts = 5;          // MLFLOW_HTTP_REQUEST_MAX_RETRIES + 1
  int initial_backoff_ms = 200;
  int connect_timeout_ms = 5000;
  // Deadline of one attempt (MLFLOW_HTTP_REQUEST_TIMEOUT, in seconds). A file transfer gets this
  // plus one second per MiB, and is also cut when no byte moves for this long.
  int timeout_ms = 15000;
  int retry_budget_ms = 30000;
  // The first SIGINT/SIGTERM (pipeline/util/cancel.h) aborts a request in flight within a second.
  // The run logger turns this off: it delivers the final status first, with its own deadline.
  bool abort_on_interrupt = true;

  static HttpSettings from_environment(const std::string& uri);
};

// `url` with any user:password@ replaced by ***@, for messages; `strip_credentials` drops it.
std::string redact_url(const std::string& url);
std::string strip_credentials(const std::string& url);

struct HttpResponse {
  long status = 0;
  std::string body;
  std::string content_type;
  long retry_after_s = 0;  // the server's Retry-After, in seconds (0: none)
};

// A transport failure (no HTTP answer: refused, reset, timed out, aborted) that survived every retry.
class HttpUnreachable : public PetalError {
 public:
  explicit HttpUnreachable(const std::string& message, int exit_code = kExitEnvironment)
      : PetalError(message, {}, exit_code) {}
};

// A small blocking HTTP client over one reused libcurl handle (keep-alive). Thread-safe: calls are
// serialised. Retries transport errors, 429 and 5xx; returns any other answer to the caller.
// Every request has a connect and a total deadline, so a server that accepts connections and never
// answers costs one `timeout_ms`, not a hang (nor one per retry).
class HttpClient {
 public:
  explicit HttpClient(HttpSettings settings);
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  const HttpSettings& settings() const { return settings_; }

  // `path` is appended to the base URL; `query` is URL-encoded. `body` is sent as JSON.
  HttpResponse get(const std::string& path, const std::map<std::string, std::string>& query = {});
  HttpResponse send_json(const std::string& method, const std::string& path, const std::string& body);
  // Streams a file as the request body (PUT) and a response body into a file (GET), so large
  // artifacts never sit in memory. `get_to_file` writes to a temp name renamed on success.
  HttpResponse put_file(const std::string& path, const std::filesystem::path& file, const std::string& content_type);
  HttpResponse get_to_file(const std::string& path, const std::filesystem::path& file);

  static std::string url_encode(const std::string& text);

  // Makes the request in flight (if any) and every later one fail at once with HttpUnreachable.
  // Safe to call from any thread while another is inside a request.
  void abort();
  bool aborted() const { return aborted_.load(); }

 private:
  struct Request;
  HttpResponse perform(const Request& request);
  HttpResponse perform_once(const Request& request, std::string* transport_error, bool* timed_out);
  bool should_abort() const;
  // Sleeps `ms` unless aborted first; returns false when aborted.
  bool pause(int ms);
  static int on_progress(void* self, long long, long long, long long, long long);

  HttpSettings settings_;
  std::mutex mutex_;
  void* curl_ = nullptr;
  std::atomic<bool> aborted_{false};
  // The connection in flight, so abort() can shut it down at once (libcurl itself would notice the
  // flag only at its next progress call, up to a second later). Guarded by socket_mutex_, which
  // the close callback also takes: a closed (and perhaps reused) descriptor is never touched.
  std::mutex socket_mutex_;
  int active_socket_ = -1;
  static int on_socket_open(void* self, int fd, int purpose);
  static int on_socket_close(void* self, int fd);
  std::mutex pause_mutex_;
  std::condition_variable pause_wake_;
};

}  // namespace petal
