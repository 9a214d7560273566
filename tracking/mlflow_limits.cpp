#include "tracking/mlflow_limits.h"

#include <algorithm>
#include <cctype>

#include "pipeline/util/error.h"

namespace petal::mlflow {

std::string check_key(const std::string& key) {
  if (key.empty()) return "must not be empty";
  if (key.size() > kMaxKeyLength) return "is longer than 250 characters";
  if (key.front() == '/') return "must not start with '/'";
  if (key.find("..") != std::string::npos) return "must not contain '..'";
  for (unsigned char c : key) {
    if (!(std::isalnum(c) || c == '_' || c == '-' || c == '.' || c == ' ' || c == ':' || c == '/')) {
      return "may only contain letters, digits, '_', '-', '.', ' ', ':' and '/'";
    }
  }
  return {};
}

void validate(const std::vector<Metric>& metrics, const std::vector<Param>& params, const std::vector<Tag>& tags) {
  const auto fail = [](const std::string& what, const std::string& key, const std::string& complaint) {
    throw PetalError("MLflow " + what + " key '" + key + "' " + complaint + "; rename it");
  };
  for (const auto& m : metrics) {
    if (auto c = check_key(m.key); !c.empty()) fail("metric", m.key, c);
  }
  for (const auto& p : params) {
    if (auto c = check_key(p.key); !c.empty()) fail("param", p.key, c);
    if (p.value.size() > kMaxParamValueLength) {
      throw PetalError("MLflow param '" + p.key + "' has a value of " + std::to_string(p.value.size()) +
                       " characters; the server keeps at most 6000 (log long text as an artifact)");
    }
  }
  for (const auto& t : tags) {
    if (auto c = check_key(t.key); !c.empty()) fail("tag", t.key, c);
    if (t.value.size() > kMaxTagValueLength) {
      throw PetalError("MLflow tag '" + t.key + "' has a value of " + std::to_string(t.value.size()) +
                       " characters; the server keeps at most 8000 (log long text as an artifact)");
    }
  }
}

std::vector<Batch> split_batches(const std::vector<Metric>& metrics, const std::vector<Param>& params,
                                 const std::vector<Tag>& tags) {
  std::vector<Batch> batches;
  std::size_t m = 0, p = 0, t = 0;
  while (m < metrics.size() || p < params.size() || t < tags.size() || batches.empty()) {
    Batch batch;
    std::size_t entities = 0;
    while (p < params.size() && batch.params.size() < kMaxParamsPerBatch && entities < kMaxEntitiesPerBatch) {
      batch.params.push_back(params[p++]);
      ++entities;
    }
    while (t < tags.size() && batch.tags.size() < kMaxTagsPerBatch && entities < kMaxEntitiesPerBatch) {
      batch.tags.push_back(tags[t++]);
      ++entities;
    }
    while (m < metrics.size() && batch.metrics.size() < kMaxMetricsPerBatch && entities < kMaxEntitiesPerBatch) {
      batch.metrics.push_back(metrics[m++]);
      ++entities;
    }
    if (batch.metrics.empty() && batch.params.empty() && batch.tags.empty()) break;
    batches.push_back(std::move(batch));
  }
  return batches;
}

}  // namespace petal::mlflow
