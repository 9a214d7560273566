// MLflow's model registry: registered models, model versions, their tags and aliases.
#include <algorithm>
#include <cctype>

#include "tracking/mlflow_client.h"

namespace petal::mlflow {

using nlohmann::json;

namespace {

constexpr std::size_t kMaxAliasLength = 255;

std::string str(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return {};
  return it->is_string() ? it->get<std::string>() : it->dump();
}

json tags_to_json(const std::vector<Tag>& tags) {
  json out = json::array();
  for (const auto& t : tags) out.push_back({{"key", t.key}, {"value", t.value}});
  return out;
}

RegisteredModel registered_model_from_json(const json& j) {
  RegisteredModel model;
  model.name = str(j, "name");
  model.description = str(j, "description");
  for (const auto& a : j.value("aliases", json::array())) model.aliases[str(a, "alias")] = str(a, "version");
  return model;
}

ModelVersion model_version_from_json(const json& j) {
  ModelVersion version;
  version.name = str(j, "name");
  version.version = str(j, "version");
  version.source = str(j, "source");
  version.run_id = str(j, "run_id");
  version.status = str(j, "status");
  for (const auto& t : j.value("tags", json::array())) version.tags[str(t, "key")] = str(t, "value");
  for (const auto& a : j.value("aliases", json::array())) version.aliases.push_back(a.is_string() ? a.get<std::string>() : a.dump());
  return version;
}

long long version_number(const std::string& version) {
  try {
    return std::stoll(version);
  } catch (const std::exception&) {
    return -1;
  }
}

// MLflow's rules for alias names, checked before the server sees them: letters, digits, '_' and
// '-', at most 255 characters, and neither "latest" nor "v<digits>" (both case-insensitive), which
// MLflow reserves for "the newest version" and "version <n>".
void validate_alias(const std::string& alias) {
  const std::string quoted = "'" + alias + "'";
  if (alias.empty()) throw PetalError("model alias must not be empty");
  if (alias.size() > kMaxAliasLength) {
    throw PetalError("model alias '" + alias.substr(0, 40) + "...' is " + std::to_string(alias.size()) +
                     " characters long; MLflow allows at most " + std::to_string(kMaxAliasLength));
  }
  for (char c : alias) {
    const auto u = static_cast<unsigned char>(c);
    if (!(std::isalnum(u) || c == '_' || c == '-')) {
      throw PetalError("model alias " + quoted +
                       " may contain only letters, digits, '_' and '-' (e.g. champion, staging-2)");
    }
  }
  std::string lowered;
  for (char c : alias) lowered += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (lowered == "latest") {
    throw PetalError("model alias " + quoted + " is reserved by MLflow (it always means the newest version); choose another name");
  }
  if (lowered.size() > 1 && lowered[0] == 'v' &&
      std::all_of(lowered.begin() + 1, lowered.end(), [](char c) { return std::isdigit(static_cast<unsigned char>(c)); })) {
    throw PetalError("model alias " + quoted + " is reserved by MLflow (v<number> names a version); choose another name");
  }
}

void require_name(const std::string& name) {
  if (name.empty()) throw PetalError("registered model name must not be empty");
}

// A search filter that matches exactly `name`, quoted so the name may contain either kind of quote.
std::string name_filter(const std::string& name) {
  if (name.find('\'') == std::string::npos) return "name='" + name + "'";
  if (name.find('"') == std::string::npos) return "name=\"" + name + "\"";
  throw PetalError("registered model name " + name + " contains both ' and \"; MLflow's search filter cannot quote it");
}

}  // namespace

RegisteredModel Client::create_registered_model(const std::string& name, const std::string& description,
                                                const std::vector<Tag>& tags) {
  require_name(name);
  json body = {{"name", name}};
  if (!description.empty()) body["description"] = description;
  if (!tags.empty()) body["tags"] = tags_to_json(tags);
  return registered_model_from_json(call("POST", "registered-models/create", body).at("registered_model"));
}

std::optional<RegisteredModel> Client::get_registered_model(const std::string& name) {
  require_name(name);
  try {
    return registered_model_from_json(get("registered-models/get", {{"name", name}}).at("registered_model"));
  } catch (const MlflowError& e) {
    if (e.error_code() == "RESOURCE_DOES_NOT_EXIST") return std::nullopt;
    throw;
  }
}

RegisteredModel Client::ensure_registered_model(const std::string& name) {
  if (auto found = get_registered_model(name)) return *found;
  try {
    return create_registered_model(name);
  } catch (const MlflowError& e) {
    if (e.error_code() != "RESOURCE_ALREADY_EXISTS") throw;
    if (auto found = get_registered_model(name)) return *found;  // created concurrently
    throw;
  }
}

ModelVersion Client::create_model_version(const std::string& name, const std::string& source, const std::string& run_id,
                                          const std::vector<Tag>& tags, const std::string& description) {
  require_name(name);
  if (source.empty()) {
    throw PetalError("model version source must not be empty: pass the model's artifact URI, e.g. "
                     "<run artifact_uri>/model");
  }
  json body = {{"name", name}, {"source", source}};
  if (!run_id.empty()) body["run_id"] = run_id;
  if (!tags.empty()) body["tags"] = tags_to_json(tags);
  if (!description.empty()) body["description"] = description;
  return model_version_from_json(call("POST", "model-versions/create", body).at("model_version"));
}

std::vector<ModelVersion> Client::search_model_versions(const std::string& name) {
  require_name(name);
  std::vector<ModelVersion> versions;
  std::string token;
  do {
    std::map<std::string, std::string> query = {{"filter", name_filter(name)}, {"max_results", "1000"}};
    if (!token.empty()) query["page_token"] = token;
    const json answer = get("model-versions/search", query);
    for (const auto& v : answer.value("model_versions", json::array())) versions.push_back(model_version_from_json(v));
    token = str(answer, "next_page_token");
  } while (!token.empty());
  std::stable_sort(versions.begin(), versions.end(), [](const ModelVersion& a, const ModelVersion& b) {
    return version_number(a.version) < version_number(b.version);
  });
  // The server (3.17) leaves `aliases` empty in search answers; the registered model has them all.
  if (!versions.empty()) {
    if (const auto model = get_registered_model(name)) {
      for (auto& v : versions) {
        v.aliases.clear();
        for (const auto& [alias, version] : model->aliases) {
          if (version == v.version) v.aliases.push_back(alias);
        }
      }
    }
  }
  return versions;
}

void Client::set_model_version_tag(const std::string& name, const std::string& version, const std::string& key,
                                   const std::string& value) {
  require_name(name);
  if (key.empty()) throw PetalError("model version tag key must not be empty");
  call("POST", "model-versions/set-tag", {{"name", name}, {"version", version}, {"key", key}, {"value", value}});
}

void Client::set_alias(const std::string& name, const std::string& alias, const std::string& version) {
  require_name(name);
  validate_alias(alias);
  call("POST", "registered-models/alias", {{"name", name}, {"alias", alias}, {"version", version}});
}

// nullopt when no version carries the alias, including when the model itself does not exist.
std::optional<ModelVersion> Client::get_version_by_alias(const std::string& name, const std::string& alias) {
  require_name(name);
  validate_alias(alias);
  try {
    return model_version_from_json(get("registered-models/alias", {{"name", name}, {"alias", alias}}).at("model_version"));
  } catch (const MlflowError& e) {
    // The server answers an unknown alias with 400 INVALID_PARAMETER_VALUE "... alias X not found."
    // (the alias was validated above, so with that text the code means "not found" here).
    if (e.error_code() == "RESOURCE_DOES_NOT_EXIST") return std::nullopt;
    if (e.error_code() == "INVALID_PARAMETER_VALUE" && e.message().find("not found") != std::string::npos) {
      return std::nullopt;
    }
    throw;
  }
}

std::optional<ModelVersion> Client::get_model_version(const std::string& name, const std::string& version) {
  require_name(name);
  try {
    return model_version_from_json(get("model-versions/get", {{"name", name}, {"version", version}}).at("model_version"));
  } catch (const MlflowError& e) {
    if (e.error_code() == "RESOURCE_DOES_NOT_EXIST") return std::nullopt;
    throw;
  }
}

void Client::delete_alias(const std::string& name, const std::string& alias) {
  require_name(name);
  validate_alias(alias);
  call("DELETE", "registered-models/alias", {{"name", name}, {"alias", alias}});
}

}  // namespace petal::mlflow
