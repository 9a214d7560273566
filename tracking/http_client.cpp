#include "tracking/http_client.h"

#include <curl/curl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <thread>

#include "pipeline/util/cancel.h"

namespace petal {

namespace fs = std::filesystem;

namespace {

std::string env(const char* name) {
  const char* value = std::getenv(name);
  return value ? value : "";
}

bool truthy(const std::string& value) { return value == "true" || value == "True" || value == "1" || value == "TRUE"; }

void global_init() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

std::size_t to_string_sink(char* data, std::size_t size, std::size_t count, void* user) {
  static_cast<std::string*>(user)->append(data, size * count);
  return size * count;
}

std::size_t to_file_sink(char* data, std::size_t size, std::size_t count, void* user) {
  return std::fwrite(data, size, count, static_cast<std::FILE*>(user)) * size;
}

std::size_t from_file_source(char* buffer, std::size_t size, std::size_t count, void* user) {
  return std::fread(buffer, size, count, static_cast<std::FILE*>(user)) * size;
}

}  // namespace

HttpSettings HttpSettings::from_environment(const std::string& uri) {
  HttpSettings s;
  s.base_url = uri;
  while (!s.base_url.empty() && s.base_url.back() == '/') s.base_url.pop_back();
  s.username = env("MLFLOW_TRACKING_USERNAME");
  s.password = env("MLFLOW_TRACKING_PASSWORD");
  s.token = env("MLFLOW_TRACKING_TOKEN");
  s.verify_tls = !truthy(env("MLFLOW_TRACKING_INSECURE_TLS"));
  // MLflow's own variables for the same two knobs; a malformed value keeps the default.
  try {
    if (const std::string t = env("MLFLOW_HTTP_REQUEST_TIMEOUT"); !t.empty()) {
      s.timeout_ms = static_cast<int>(std::clamp(std::stod(t), 0.1, 3600.0) * 1000);
      s.retry_budget_ms = std::max(s.retry_budget_ms, 2 * s.timeout_ms);
    }
    if (const std::string r = env("MLFLOW_HTTP_REQUEST_MAX_RETRIES"); !r.empty()) {
      s.max_attempts = std::clamp(std::stoi(r), 0, 20) + 1;
    }
  } catch (const std::exception&) {
  }
  return s;
}

std::string redact_url(const std::string& url) {
  const std::size_t scheme = url.find("://");
  const std::size_t at = url.find('@', scheme == std::string::npos ? 0 : scheme + 3);
  const std::size_t slash = url.find('/', scheme == std::string::npos ? 0 : scheme + 3);
  if (scheme == std::string::npos || at == std::string::npos || (slash != std::string::npos && at > slash)) return url;
  return url.substr(0, scheme + 3) + "***@" + url.substr(at + 1);
}

std::string strip_credentials(const std::string& url) {
  const std::string redacted = redact_url(url);
  const std::size_t at = redacted.find("***@");
  return at == std::string::npos ? redacted : redacted.substr(0, at) + redacted.substr(at + 4);
}

struct HttpClient::Request {
  std::string method;
  std::string path;
  const std::string* body = nullptr;
  const fs::path* upload = nullptr;
  const fs::path* download = nullptr;
  std::string content_type;
};

HttpClient::HttpClient(HttpSettings settings) : settings_(std::move(settings)) {
  global_init();
  curl_ = curl_easy_init();
}

HttpClient::~HttpClient() { curl_easy_cleanup(static_cast<CURL*>(curl_)); }

std::string HttpClient::url_encode(const std::string& text) {
  std::string out;
  static const char* hex = "0123456789ABCDEF";
  for (unsigned char c : text) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

HttpResponse HttpClient::get(const std::string& path, const std::map<std::string, std::string>& query) {
  std::string full = path;
  char separator = '?';
  for (const auto& [key, value] : query) {
    full += separator + url_encode(key) + "=" + url_encode(value);
    separator = '&';
  }
  return perform(Request{"GET", full});
}

HttpResponse HttpClient::send_json(const std::string& method, const std::string& path, const std::string& body) {
  Request r{method, path};
  r.body = &body;
  r.content_type = "application/json";
  return perform(r);
}

HttpResponse HttpClient::put_file(const std::string& path, const fs::path& file, const std::string& content_type) {
  Request r{"PUT", path};
  r.upload = &file;
  r.content_type = content_type;
  return perform(r);
}

HttpResponse HttpClient::get_to_file(const std::string& path, const fs::path& file) {
  Request r{"GET", path};
  r.download = &file;
  return perform(r);
}

int HttpClient::on_socket_open(void* self, int fd, int) {
  auto* client = static_cast<HttpClient*>(self);
  std::lock_guard<std::mutex> lock(client->socket_mutex_);
  client->active_socket_ = fd;
  return CURL_SOCKOPT_OK;
}

int HttpClient::on_socket_close(void* self, int fd) {
  auto* client = static_cast<HttpClient*>(self);
  std::lock_guard<std::mutex> lock(client->socket_mutex_);
  if (client->active_socket_ == fd) client->active_socket_ = -1;
  return ::close(fd);
}

void HttpClient::abort() {
  aborted_.store(true);
  {
    std::lock_guard<std::mutex> lock(socket_mutex_);
    if (active_socket_ >= 0) ::shutdown(active_socket_, SHUT_RDWR);  // the blocked request returns now
  }
  std::lock_guard<std::mutex> lock(pause_mutex_);
  pause_wake_.notify_all();
}

bool HttpClient::should_abort() const {
  return aborted_.load() || (settings_.abort_on_interrupt && Interrupt::requested());
}

bool HttpClient::pause(int ms) {
  std::unique_lock<std::mutex> lock(pause_mutex_);
  const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
  // Wakes early for abort(); an interrupt is noticed within 100 ms.
  while (!should_abort()) {
    if (pause_wake_.wait_until(lock, std::min(until, std::chrono::steady_clock::now() + std::chrono::milliseconds(100))) ==
            std::cv_status::timeout &&
        std::chrono::steady_clock::now() >= until) {
      return true;
    }
  }
  return false;
}

int HttpClient::on_progress(void* self, long long, long long, long long, long long) {
  return static_cast<const HttpClient*>(self)->should_abort() ? 1 : 0;
}

HttpResponse HttpClient::perform(const Request& request) {
  std::lock_guard<std::mutex> lock(mutex_);
  thread_local std::mt19937 random(std::random_device{}());
  const auto start = std::chrono::steady_clock::now();
  const auto elapsed_ms = [&] {
    return static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start).count());
  };
  const std::string what = request.method + " " + request.path.substr(0, request.path.find('?'));
  std::string transport_error;
  HttpResponse response;
  bool timed_out = false;
  int wait_ms = 0;
  for (int attempt = 1; attempt <= std::max(1, settings_.max_attempts); ++attempt) {
    if (attempt > 1) {
      // A server that let a whole deadline pass without answering is away: asking again would only
      // hold the caller for another deadline (the run logger then spools, `petal sync` resends).
      if (timed_out || elapsed_ms() + wait_ms > settings_.retry_budget_ms) break;
      if (!pause(wait_ms)) break;
    }
    if (should_abort()) break;
    transport_error.clear();
    timed_out = false;
    response = perform_once(request, &transport_error, &timed_out);
    const bool retry = !transport_error.empty() || response.status == 429 || response.status >= 500;
    if (!retry) return response;
    // Exponential backoff with full jitter spreads many clients' retries apart; a server that
    // says when to come back (Retry-After on 429/503) is believed, within the budget.
    const int ceiling = settings_.initial_backoff_ms << std::min(attempt - 1, 6);
    wait_ms = std::uniform_int_distribution<int>(ceiling / 2, ceiling)(random);
    if (response.retry_after_s > 0) wait_ms = static_cast<int>(std::min<long>(response.retry_after_s, 3600) * 1000);
  }
  if (should_abort()) {
    if (aborted_.load()) {
      throw HttpUnreachable("request to " + redact_url(settings_.base_url) + " (" + what + ") was abandoned: its deadline passed");
    }
    throw HttpUnreachable("request to " + redact_url(settings_.base_url) + " (" + what + ") was abandoned: interrupted",
                          kExitInterrupted);
  }
  if (!transport_error.empty()) {
    throw HttpUnreachable("cannot reach " + redact_url(settings_.base_url) + " (" + what + "): " + transport_error);
  }
  return response;
}

HttpResponse HttpClient::perform_once(const Request& request, std::string* transport_error, bool* timed_out) {
  CURL* curl = static_cast<CURL*>(curl_);
  curl_easy_reset(curl);
  HttpResponse response;
  char error_buffer[CURL_ERROR_SIZE] = {};
  const std::string url = settings_.base_url + request.path;
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, error_buffer);
  curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(settings_.connect_timeout_ms));
  long total_ms = settings_.timeout_ms;
  if (request.upload || request.download) {
    std::error_code size_error;
    const auto size = request.upload ? fs::file_size(*request.upload, size_error) : 0;
    // A big file may take long, but never stalls: no byte for `timeout_ms` ends it.
    total_ms = settings_.timeout_ms + (size_error ? 0 : static_cast<long>(size >> 20) * 1000) +
               (request.download ? 10L * settings_.timeout_ms : 0L);
    curl_easy_setopt(curl, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(curl, CURLOPT_LOW_SPEED_TIME, std::max(1L, static_cast<long>(settings_.timeout_ms / 1000)));
  }
  curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, total_ms);
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl, CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(curl, CURLOPT_XFERINFOFUNCTION, &HttpClient::on_progress);
  curl_easy_setopt(curl, CURLOPT_XFERINFODATA, this);
  curl_easy_setopt(curl, CURLOPT_SOCKOPTFUNCTION, &HttpClient::on_socket_open);
  curl_easy_setopt(curl, CURLOPT_SOCKOPTDATA, this);
  curl_easy_setopt(curl, CURLOPT_CLOSESOCKETFUNCTION, &HttpClient::on_socket_close);
  curl_easy_setopt(curl, CURLOPT_CLOSESOCKETDATA, this);
  curl_easy_setopt(curl, CURLOPT_SSL_VERIFYPEER, settings_.verify_tls ? 1L : 0L);
  curl_easy_setopt(curl, CURLOPT_SSL_VERIFYHOST, settings_.verify_tls ? 2L : 0L);
  curl_easy_setopt(curl, CURLOPT_USERAGENT, "petal/0.1");

  curl_slist* headers = nullptr;
  if (!request.content_type.empty()) headers = curl_slist_append(headers, ("Content-Type: " + request.content_type).c_str());
  headers = curl_slist_append(headers, "Expect:");  // no 100-continue round trip
  // As MLflow's own client: basic auth when both username and password are set, else a token.
  if (!settings_.username.empty() && !settings_.password.empty()) {
    curl_easy_setopt(curl, CURLOPT_HTTPAUTH, CURLAUTH_BASIC);
    curl_easy_setopt(curl, CURLOPT_USERNAME, settings_.username.c_str());
    curl_easy_setopt(curl, CURLOPT_PASSWORD, settings_.password.c_str());
  } else if (!settings_.token.empty()) {
    headers = curl_slist_append(headers, ("Authorization: Bearer " + settings_.token).c_str());
  }
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);

  std::FILE* upload = nullptr;
  std::FILE* download = nullptr;
  fs::path download_temp;
  if (request.upload) {
    upload = std::fopen(request.upload->c_str(), "rb");
    if (!upload) {
      curl_slist_free_all(headers);
      throw PetalError("cannot read " + request.upload->string(), {}, kExitEnvironment);
    }
    curl_easy_setopt(curl, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(curl, CURLOPT_READFUNCTION, from_file_source);
    curl_easy_setopt(curl, CURLOPT_READDATA, upload);
    std::error_code size_error;
    const auto size = fs::file_size(*request.upload, size_error);
    curl_easy_setopt(curl, CURLOPT_INFILESIZE_LARGE, static_cast<curl_off_t>(size_error ? 0 : size));
  } else if (request.body) {
    curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, request.method.c_str());
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, request.body->data());
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(request.body->size()));
  } else if (request.method != "GET") {
    curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, request.method.c_str());
  }
  if (request.download) {
    download_temp = request.download->string() + ".part";
    download = std::fopen(download_temp.c_str(), "wb");
    if (!download) {
      if (upload) std::fclose(upload);
      curl_slist_free_all(headers);
      throw PetalError("cannot create " + download_temp.string(), {}, kExitEnvironment);
    }
  }
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, to_string_sink);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &response.body);

  if (download) {
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, to_file_sink);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, download);
  }
  const CURLcode code = curl_easy_perform(curl);
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &response.status);
  char* content_type = nullptr;
  curl_easy_getinfo(curl, CURLINFO_CONTENT_TYPE, &content_type);
  if (content_type) response.content_type = content_type;
  curl_off_t retry_after = 0;
  if (curl_easy_getinfo(curl, CURLINFO_RETRY_AFTER, &retry_after) == CURLE_OK) response.retry_after_s = retry_after;
  curl_slist_free_all(headers);
  if (upload) std::fclose(upload);
  if (download) {
    std::fclose(download);
    std::error_code ec;
    if (code == CURLE_OK && response.status >= 200 && response.status < 300) {
      fs::rename(download_temp, *request.download, ec);
    } else {
      if (code == CURLE_OK) {  // keep the error text for the caller
        std::FILE* in = std::fopen(download_temp.c_str(), "rb");
        if (in) {
          char buffer[4096];
          std::size_t n;
          while ((n = std::fread(buffer, 1, sizeof buffer, in)) > 0) response.body.append(buffer, n);
          std::fclose(in);
        }
      }
      fs::remove(download_temp, ec);
    }
  }
  if (code != CURLE_OK) {
    *transport_error = error_buffer[0] ? error_buffer : curl_easy_strerror(code);
    *timed_out = code == CURLE_OPERATION_TIMEDOUT;
    response.status = 0;
  }
  return response;
}

}  // namespace petal
