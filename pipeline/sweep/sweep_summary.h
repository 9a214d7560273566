#pragma once
// The comparison a sweep ends with: trials ranked by the objective, a table (CSV and Markdown) of
// their swept values and key metrics, the best trial, and the data for the comparison charts.
#include <string>
#include <vector>

#include "pipeline/sweep/sweep_definition.h"
#include "pipeline/sweep/sweep_state.h"

namespace petal {

// The metric key an objective names in a trial's metrics ("stage.metric"): `metric` itself when it
// is such a key, else "<stage>.<metric>" for the last stage in `stage_order` that reports it; ""
// when none does.
std::string find_objective_key(const std::string& metric, const std::vector<std::string>& stage_order,
                               const nlohmann::json& metrics);

struct ComparisonTable {
  std::vector<std::string> header;
  std::vector<std::vector<std::string>> rows;
};
std::string to_csv(const ComparisonTable& table);
std::string to_markdown(const ComparisonTable& table);

struct SweepSummary {
  std::vector<std::size_t> ranking;  // indexes into state.trials: finished with an objective, best first; then the rest
  int best = -1;                     // index into state.trials; -1 when no trial has an objective value
  ComparisonTable table;
  nlohmann::json to_json(const SweepState& state) const;
};

// `swept` lists the swept parameters (their columns, in axis order).
SweepSummary summarize(const SweepState& state, const SweepDefinition& sweep, const std::vector<std::string>& swept);

// What petal-data-worker's `sweep-charts` command draws: the objective per trial (bars) and every
// trial's per-epoch validation curve of the objective's metric (val_accuracy when it has none).
nlohmann::json chart_request(const SweepState& state, const SweepDefinition& sweep, const SweepSummary& summary);

}  // namespace petal
