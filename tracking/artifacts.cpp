// Run artifacts through the MLflow server's artifact proxy (`mlflow server --serve-artifacts`, the
// default): uploads are streamed PUTs, downloads streamed GETs, listings the tracking API's
// artifacts/list. Only `mlflow-artifacts:` artifact URIs are supported; a server whose runs store
// artifacts directly in s3://, gs://, a local path, ... would need that store's own client.
#include <algorithm>
#include <cctype>

#include "tracking/mlflow_client.h"

namespace petal::mlflow {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr const char* kProxyRoot = "/api/2.0/mlflow-artifacts/artifacts";
constexpr const char* kScheme = "mlflow-artifacts:";

std::string lower(std::string text) {
  for (char& c : text) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return text;
}

// The Content-Type sent with an upload, so the UI previews images, text and tables.
std::string content_type_for(const fs::path& file) {
  std::string extension = lower(file.extension().string());
  if (!extension.empty()) extension.erase(0, 1);
  if (extension == "png") return "image/png";
  if (extension == "jpg" || extension == "jpeg") return "image/jpeg";
  if (extension == "gif") return "image/gif";
  if (extension == "svg") return "image/svg+xml";
  if (extension == "json") return "application/json";
  if (extension == "txt" || extension == "log") return "text/plain";
  if (extension == "csv") return "text/csv";
  if (extension == "md") return "text/markdown";
  if (extension == "html" || extension == "htm") return "text/html";
  if (extension == "yaml" || extension == "yml") return "application/x-yaml";
  const std::string name = file.filename().string();
  if (name == "MLmodel" || name == "MLproject") return "text/plain";  // YAML without an extension
  return "application/octet-stream";
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string percent_decode(const std::string& text) {
  std::string out;
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '%' && i + 2 < text.size() && hex_value(text[i + 1]) >= 0 && hex_value(text[i + 2]) >= 0) {
      out += static_cast<char>(hex_value(text[i + 1]) * 16 + hex_value(text[i + 2]));
      i += 2;
    } else {
      out += text[i];
    }
  }
  return out;
}

// Splits a '/'-separated artifact path into its non-empty segments; "." is dropped and ".." (which
// would leave the run's artifact root) is refused.
std::vector<std::string> split_path(const std::string& path, const std::string& what) {
  std::vector<std::string> segments;
  std::size_t start = 0;
  while (start <= path.size()) {
    std::size_t end = path.find('/', start);
    if (end == std::string::npos) end = path.size();
    const std::string segment = path.substr(start, end - start);
    if (segment == "..") {
      throw PetalError("artifact path '" + path + "' (" + what + ") must not contain '..': artifact paths are relative to "
                       "the run's artifact root and cannot leave it");
    }
    if (segment.find('#') != std::string::npos) {
      throw PetalError("artifact path '" + path + "' (" + what + ") must not contain '#': the MLflow server refuses "
                       "such paths; rename the file or folder");
    }
    if (!segment.empty() && segment != ".") segments.push_back(segment);
    start = end + 1;
  }
  return segments;
}

std::string join_encoded(const std::vector<std::string>& segments) {
  std::string out;
  for (const auto& s : segments) out += "/" + HttpClient::url_encode(s);
  return out;
}

std::string join_path(const std::string& folder, const std::string& name) {
  if (folder.empty()) return name;
  if (name.empty()) return folder;
  return folder + "/" + name;
}

const std::string& require_artifact_uri(const RunInfo& run) {
  if (run.artifact_uri.empty()) {
    throw PetalError("run '" + run.run_id + "' has no artifact_uri: pass the RunInfo returned by create_run or get_run");
  }
  return run.artifact_uri;
}

}  // namespace

std::string Client::artifact_proxy_path(const std::string& artifact_uri, const std::string& relative_path) {
  if (lower(artifact_uri.substr(0, std::string(kScheme).size())) != kScheme) {
    const std::size_t colon = artifact_uri.find(':');
    const std::string scheme =
        colon == std::string::npos || artifact_uri.find('/') < colon ? "a local path" : artifact_uri.substr(0, colon + 1) + "//";
    throw PetalError("unsupported artifact location '" + redact_url(artifact_uri) + "' (" + scheme +
                         "): petal reads and writes artifacts only through the MLflow server's artifact proxy "
                         "(mlflow-artifacts:/ URIs); start the server with --serve-artifacts (the default) and "
                         "--artifacts-destination instead of a --default-artifact-root, or create the experiment "
                         "without an explicit artifact_location",
                     {}, kExitEnvironment);
  }
  std::string rest = artifact_uri.substr(std::string(kScheme).size());
  const std::size_t query = rest.find_first_of("?#");
  if (query != std::string::npos) rest.erase(query);
  if (rest.rfind("//", 0) == 0) {
    // mlflow-artifacts://host:port/path: the host names the tracking server, which petal already
    // talks to; only the path matters.
    const std::size_t slash = rest.find('/', 2);
    rest = slash == std::string::npos ? std::string() : rest.substr(slash);
  }
  std::vector<std::string> segments;
  for (const auto& s : split_path(rest, "in artifact URI " + redact_url(artifact_uri))) segments.push_back(percent_decode(s));
  for (const auto& s : split_path(relative_path, "relative to " + redact_url(artifact_uri))) segments.push_back(s);
  return kProxyRoot + join_encoded(segments);
}

void Client::upload_artifact(const RunInfo& run, const fs::path& local_file, const std::string& artifact_path) {
  std::error_code ec;
  if (!fs::is_regular_file(local_file, ec)) {
    throw PetalError("cannot upload " + local_file.string() + " as an artifact: not a readable regular file", {},
                     kExitEnvironment);
  }
  const std::string relative = join_path(artifact_path, local_file.filename().string());
  const std::string path = artifact_proxy_path(require_artifact_uri(run), relative);
  const HttpResponse response = http_->put_file(path, local_file, content_type_for(local_file));
  parse_answer("upload of artifact '" + relative + "' to run " + run.run_id, response);
}

void Client::upload_artifacts(const RunInfo& run, const fs::path& local_dir, const std::string& artifact_path) {
  std::error_code ec;
  if (!fs::is_directory(local_dir, ec)) {
    throw PetalError("cannot upload " + local_dir.string() + " as artifacts: not a directory", {}, kExitEnvironment);
  }
  require_artifact_uri(run);
  std::vector<fs::path> files;
  for (fs::recursive_directory_iterator it(local_dir, ec), end; !ec && it != end; it.increment(ec)) {
    if (it->is_regular_file(ec)) files.push_back(it->path());
  }
  if (ec) throw PetalError("cannot list " + local_dir.string() + ": " + ec.message(), {}, kExitEnvironment);
  std::sort(files.begin(), files.end());
  for (const fs::path& file : files) {
    const std::string folder = file.lexically_relative(local_dir).parent_path().generic_string();
    upload_artifact(run, file, join_path(artifact_path, folder));
  }
}

std::vector<FileInfo> Client::list_artifacts(const std::string& run_id, const std::string& path) {
  std::vector<FileInfo> files;
  std::string token;
  do {
    std::map<std::string, std::string> query = {{"run_id", run_id}};
    if (!path.empty()) query["path"] = path;
    if (!token.empty()) query["page_token"] = token;
    const json answer = get("artifacts/list", query);
    for (const auto& f : answer.value("files", json::array())) {
      FileInfo info;
      info.path = f.value("path", "");
      info.is_dir = f.value("is_dir", false);
      if (auto size = f.find("file_size"); size != f.end()) {
        info.file_size = size->is_string() ? std::stoll(size->get<std::string>()) : size->get<std::int64_t>();
      }
      files.push_back(std::move(info));
    }
    const auto next = answer.find("next_page_token");
    token = next != answer.end() && next->is_string() ? next->get<std::string>() : "";
  } while (!token.empty());
  return files;
}

void Client::download_artifact(const RunInfo& run, const std::string& path, const fs::path& local_file) {
  const std::string proxy_path = artifact_proxy_path(require_artifact_uri(run), path);
  if (local_file.has_parent_path()) {
    std::error_code ec;
    fs::create_directories(local_file.parent_path(), ec);
    if (ec) {
      throw PetalError("cannot create " + local_file.parent_path().string() + ": " + ec.message(), {}, kExitEnvironment);
    }
  }
  const HttpResponse response = http_->get_to_file(proxy_path, local_file);
  parse_answer("download of artifact '" + path + "' of run " + run.run_id, response);
}

void Client::download_artifact_folder(const RunInfo& run, const std::string& path, const fs::path& local_dir) {
  std::vector<std::string> folders = {path};
  std::size_t files = 0;
  while (!folders.empty()) {
    const std::string folder = folders.back();
    folders.pop_back();
    for (const FileInfo& entry : list_artifacts(run.run_id, folder)) {
      if (entry.is_dir) {
        folders.push_back(entry.path);
        continue;
      }
      const std::string relative = path.empty() ? entry.path : entry.path.substr(path.size() + 1);
      download_artifact(run, entry.path, local_dir / relative);
      ++files;
    }
  }
  if (files == 0) {
    throw PetalError("run " + run.run_id + " has no artifacts under '" + path + "'", {}, kExitUsage);
  }
}

}  // namespace petal::mlflow
