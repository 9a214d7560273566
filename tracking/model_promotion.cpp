#include "tracking/model_promotion.h"

#include <cmath>
#include <charconv>
#include <cstdio>

#include "stages/register/promotion.h"

namespace petal::mlflow {

namespace {

constexpr const char* kDigestTag = "petal.model_digest";
constexpr const char* kChampion = "champion";
constexpr const char* kChallenger = "challenger";

std::string metric_tag(const std::string& metric) { return "metric." + metric; }

// The shortest text that reads back as the same double ("0.85", not "0.84999999999999998").
std::string format_value(double value) {
  char text[64];
  const auto result = std::to_chars(text, text + sizeof text, value);
  return std::string(text, result.ptr);
}

std::optional<double> parse_value(const std::map<std::string, std::string>& tags, const std::string& key) {
  const auto it = tags.find(key);
  if (it == tags.end()) return std::nullopt;
  try {
    return std::stod(it->second);
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

bool run_has_model(Client& client, const std::string& run_id, const std::string& artifact_path) {
  for (const FileInfo& file : client.list_artifacts(run_id, artifact_path)) {
    if (file.path == artifact_path + "/MLmodel") return true;
  }
  return false;
}

}  // namespace

RegistrationResult register_and_promote(Client& client, const RunInfo& run, const ModelRegistration& request) {
  RegistrationResult result;
  result.run_id = run.run_id;
  client.ensure_registered_model(request.registered_model);

  std::optional<ModelVersion> version;
  for (const ModelVersion& existing : client.search_model_versions(request.registered_model)) {
    const auto tag = existing.tags.find(kDigestTag);
    if (tag != existing.tags.end() && tag->second == request.model_digest) version = existing;
  }
  if (!version) {
    if (!run_has_model(client, run.run_id, request.artifact_path)) {
      client.upload_artifacts(run, request.local_model_dir, request.artifact_path);
    }
    std::vector<Tag> tags;
    for (const auto& [key, value] : request.tags) tags.push_back({key, value});
    for (const auto& [name, value] : request.metrics) tags.push_back({metric_tag(name), format_value(value)});
    tags.push_back({kDigestTag, request.model_digest});
    version = client.create_model_version(request.registered_model, run.artifact_uri + "/" + request.artifact_path,
                                          run.run_id, tags, request.description);
    result.created = true;
  }
  result.version = version->version;
  result.source = version->source;
  result.run_id = version->run_id;

  const auto metric = request.metrics.find(request.metric);
  const double candidate = metric == request.metrics.end() ? std::nan("") : metric->second;
  const std::optional<ModelVersion> champion = client.get_version_by_alias(request.registered_model, kChampion);
  if (champion && champion->version == result.version) {
    result.alias = kChampion;
    result.previous_champion = champion->version;
    result.champion_metric = parse_value(champion->tags, metric_tag(request.metric));
    result.reason = "this model is already the champion";
    return result;
  }
  if (champion) {
    result.previous_champion = champion->version;
    result.champion_metric = parse_value(champion->tags, metric_tag(request.metric));
  }
  const PromotionDecision decision =
      decide_promotion(request.metric, candidate, result.previous_champion, result.champion_metric,
                       request.higher_is_better, request.margin);
  result.alias = decision.promote ? kChampion : kChallenger;
  result.reason = decision.reason;
  if (decision.promote) {
    const auto challenger = client.get_version_by_alias(request.registered_model, kChallenger);
    if (challenger && challenger->version == result.version) client.delete_alias(request.registered_model, kChallenger);
  }
  client.set_alias(request.registered_model, result.alias, result.version);
  client.set_model_version_tag(request.registered_model, result.version, "petal.promotion", result.reason);
  return result;
}

}  // namespace petal::mlflow
