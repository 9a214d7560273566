#pragma once
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
  int max_attempts = 5;    // connection errors, 429 and 5xx are retried with backoff and jitter
  int initial_backoff_ms = 200;
  int timeout_ms = 60000;

  static HttpSettings from_environment(const std::string& uri);
};

// `url` with any user:password@ replaced by ***@, for messages; `strip_credentials` drops it.
std::string redact_url(const std::string& url);
std::string strip_credentials(const std::string& url);

struct HttpResponse {
  long status = 0;
  std::string body;
  std::string content_type;
};

// A transport failure (no HTTP answer) that survived every retry.
class HttpUnreachable : public PetalError {
 public:
  explicit HttpUnreachable(const std::string& message) : PetalError(message, {}, kExitEnvironment) {}
};

// A small blocking HTTP client over one reused libcurl handle (keep-alive). Thread-safe: calls are
// serialised. Retries transport errors, 429 and 5xx; returns any other answer to the caller.
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

 private:
  struct Request;
  HttpResponse perform(const Request& request);
  HttpResponse perform_once(const Request& request, std::string* transport_error);

  HttpSettings settings_;
  std::mutex mutex_;
  void* curl_ = nullptr;
};

}  // namespace petal
