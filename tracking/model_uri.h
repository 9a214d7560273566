#pragma once
// What `petal predict --model` may name, resolved to a local folder.
#include <filesystem>
#include <functional>
#include <string>

#include "tracking/mlflow_client.h"

namespace petal::mlflow {

struct ModelLocation {
  std::filesystem::path dir;  // the model on disk (an MLflow model folder or a train stage's output)
  std::string resolved;       // what the URI named, e.g. "models:/flowers5@champion = version 3 of run <id>"
  bool downloaded = false;    // fetched now; false for a local folder or a cached copy
};

// runs:/ or models:/ (needs the tracking server); anything else is a local path.
bool is_registry_or_run_uri(const std::string& uri);

// Resolves a local folder as is, or, through the tracking server,
//   runs:/<run id>/<artifact path>
//   models:/<name>/<version>
//   models:/<name>@<alias>        (an alias is looked up on every call: it may move)
// Remote models are downloaded once into cache_root/<16 hex digits of (run id, path)>/: a run's
// artifacts do not change, so the copy is reused; a folder appears there only complete (by rename).
// Throws PetalError with what was not found and how to list what exists.
// `client` is called only for remote URIs (a local folder needs no server).
ModelLocation resolve_model_uri(const std::string& uri, const std::function<Client&()>& client,
                                const std::filesystem::path& cache_root);

}  // namespace petal::mlflow
