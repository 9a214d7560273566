#include "tracking/model_uri.h"

#include <unistd.h>

#include <random>

#include "pipeline/util/error.h"
#include "pipeline/util/sha256.h"

namespace petal::mlflow {

namespace fs = std::filesystem;

namespace {

struct RunArtifact {
  std::string run_id;
  std::string path;  // inside the run's artifact root
};

bool starts_with(const std::string& text, const std::string& prefix) { return text.rfind(prefix, 0) == 0; }

std::string trim_slashes(std::string text) {
  while (!text.empty() && text.front() == '/') text.erase(0, 1);
  while (!text.empty() && text.back() == '/') text.pop_back();
  return text;
}

RunArtifact parse_runs_uri(const std::string& uri) {
  const std::string rest = trim_slashes(uri.substr(std::string("runs:/").size()));
  const auto slash = rest.find('/');
  if (rest.empty() || slash == std::string::npos) {
    throw PetalError("model URI " + uri + " must look like runs:/<run id>/<artifact path>, e.g. runs:/0a1b.../evaluate/model");
  }
  return {rest.substr(0, slash), rest.substr(slash + 1)};
}

// The version's source as a path inside its run's artifacts.
RunArtifact version_artifact(Client& client, const ModelVersion& version, const std::string& uri) {
  if (starts_with(version.source, "runs:/")) return parse_runs_uri(version.source);
  if (version.run_id.empty()) {
    throw PetalError(uri + " = version " + version.version + " has no run; petal can only fetch models logged to a run "
                     "(its source is " + version.source + ")");
  }
  const RunInfo run = client.get_run(version.run_id).info;
  const std::string root = run.artifact_uri + "/";
  if (!starts_with(version.source, root)) {
    throw PetalError(uri + " = version " + version.version + " has source " + version.source +
                     ", which is not inside its run's artifacts (" + run.artifact_uri + ")");
  }
  return {version.run_id, trim_slashes(version.source.substr(root.size()))};
}

ModelVersion registry_version(Client& client, const std::string& uri) {
  const std::string rest = trim_slashes(uri.substr(std::string("models:/").size()));
  const auto at = rest.find('@');
  const auto slash = rest.find('/');
  std::optional<ModelVersion> version;
  std::string name;
  if (at != std::string::npos) {
    name = rest.substr(0, at);
    version = client.get_version_by_alias(name, rest.substr(at + 1));
  } else if (slash != std::string::npos) {
    name = rest.substr(0, slash);
    version = client.get_model_version(name, rest.substr(slash + 1));
  } else {
    throw PetalError("model URI " + uri + " must name a version or an alias: models:/<name>/<version> or "
                     "models:/<name>@<alias>, e.g. models:/flowers5@champion");
  }
  if (!version) {
    const auto model = client.get_registered_model(name);
    std::string known;
    if (model) {
      for (const auto& [alias, v] : model->aliases) known += (known.empty() ? "" : ", ") + alias + " -> " + v;
    }
    throw PetalError(uri + " was not found at " + client.base_url() +
                     (model ? "; the model's aliases are: " + (known.empty() ? std::string("none") : known)
                            : "; there is no registered model named '" + name + "'"));
  }
  return *version;
}

}  // namespace

bool is_registry_or_run_uri(const std::string& uri) { return starts_with(uri, "runs:/") || starts_with(uri, "models:/"); }

ModelLocation resolve_model_uri(const std::string& uri, const std::function<Client&()>& connect, const fs::path& cache_root) {
  ModelLocation location;
  if (!is_registry_or_run_uri(uri)) {
    std::error_code ec;
    if (!fs::is_directory(uri, ec)) {
      throw PetalError("--model " + uri + " is neither a folder nor a runs:/ or models:/ URI");
    }
    location.dir = uri;
    location.resolved = fs::absolute(uri).lexically_normal().string();
    return location;
  }
  Client& client = connect();
  RunArtifact artifact;
  if (starts_with(uri, "runs:/")) {
    artifact = parse_runs_uri(uri);
    location.resolved = uri;
  } else {
    const ModelVersion version = registry_version(client, uri);
    artifact = version_artifact(client, version, uri);
    location.resolved = uri + " = version " + version.version + " (runs:/" + artifact.run_id + "/" + artifact.path + ")";
  }
  location.dir = cache_root / sha256_hex(artifact.run_id + "\n" + artifact.path).substr(0, 16);
  std::error_code ec;
  if (fs::is_directory(location.dir, ec)) return location;

  fs::create_directories(cache_root, ec);
  std::random_device random;
  const fs::path temp = cache_root / (".tmp-" + std::to_string(::getpid()) + "-" + std::to_string(random()));
  try {
    client.download_artifact_folder(client.get_run(artifact.run_id).info, artifact.path, temp);
  } catch (...) {
    fs::remove_all(temp, ec);
    throw;
  }
  fs::rename(temp, location.dir, ec);
  if (ec) {  // another process finished the same download first: use its copy
    fs::remove_all(temp, ec);
    if (!fs::is_directory(location.dir)) throw PetalError("cannot store the model in " + location.dir.string(), {}, kExitEnvironment);
  }
  location.downloaded = true;
  return location;
}

}  // namespace petal::mlflow
