#pragma once
// `petal compare`: a table of MLflow runs — their names, status, the parameters that differ
// between them and key metrics — sorted by one metric. Pure functions over runs read with the
// REST client, so the table is tested on runs read back from a real server.
#include <string>
#include <vector>

#include "pipeline/sweep/sweep_summary.h"
#include "tracking/mlflow_types.h"

namespace petal::mlflow {

struct ComparisonOptions {
  std::string sort_metric;            // "" : the first metric column
  bool ascending = false;             // default: highest first
  int top = 0;                        // 0: all
  std::vector<std::string> metrics;   // empty: the usual accuracy/F1 metrics the runs have
  std::vector<std::string> params;    // empty: the params whose values differ between the runs
  int max_params = 6;
};

// Runs whose sort metric is missing come last, in start order (newest first).
ComparisonTable compare_runs(std::vector<Run> runs, const ComparisonOptions& options);

// The table with aligned columns (numbers right-aligned), for a terminal.
std::string to_aligned_text(const ComparisonTable& table);

}  // namespace petal::mlflow
