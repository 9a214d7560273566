#pragma once
#include <string>
#include <vector>

#include "tracking/mlflow_types.h"

namespace petal::mlflow {

// The MLflow server's limits, enforced on petal's side so a batch is never half-rejected.
inline constexpr std::size_t kMaxMetricsPerBatch = 1000;
inline constexpr std::size_t kMaxParamsPerBatch = 100;
inline constexpr std::size_t kMaxTagsPerBatch = 100;
inline constexpr std::size_t kMaxEntitiesPerBatch = 1000;
inline constexpr std::size_t kMaxKeyLength = 250;
inline constexpr std::size_t kMaxParamValueLength = 6000;
inline constexpr std::size_t kMaxTagValueLength = 8000;

// "" when `key` is a valid metric/param/tag key, else the complaint: at most 250 characters of
// letters, digits, '_', '-', '.', ' ', ':' and '/', no leading '/', no "..".
std::string check_key(const std::string& key);

// Throws PetalError naming the offending key and what to do (a petal-side error instead of the
// server's 400 halfway through a non-atomic batch).
void validate(const std::vector<Metric>& metrics, const std::vector<Param>& params, const std::vector<Tag>& tags);

struct Batch {
  std::vector<Metric> metrics;
  std::vector<Param> params;
  std::vector<Tag> tags;
};

// Splits into batches within every per-request limit, preserving order within each kind.
std::vector<Batch> split_batches(const std::vector<Metric>& metrics, const std::vector<Param>& params,
                                 const std::vector<Tag>& tags);

}  // namespace petal::mlflow
