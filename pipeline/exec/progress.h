#pragma once
#include <cstdio>
#include <string>

#include "pipeline/exec/executor.h"

namespace petal {

// Prints one line per stage event, ninja-style: "[2/7] split  ran in 1.2s  (3f2a9c1d)".
// With `explain`, each stage that runs is followed by the reasons its key is not cached.
class ProgressPrinter : public ExecutionObserver {
 public:
  ProgressPrinter(std::FILE* out, std::size_t total, const std::string& experiment, const RunLog* log,
                  const StageCache* cache, bool explain);
  void on_stage_start(const StagePlan& plan) override;
  void on_stage_end(const StagePlan& plan, const StageOutcome& outcome) override;
  void on_heartbeat(const StagePlan& plan, double seconds) override;
  void print_summary(const RunResult& result);

 private:
  std::string prefix(const StagePlan& plan) const;
  std::FILE* out_;
  std::size_t total_;
  std::size_t width_ = 0;
  std::string experiment_;
  const RunLog* log_;
  const StageCache* cache_;
  bool explain_;
};

}  // namespace petal
