#pragma once
// One line per event of one trial, prefixed with its id, for a terminal that several trials share:
//   [t03] train ran in 42.1s (3f2a9c1d)
//   [t04] split shared: built meanwhile by t00 (797bcaf2)
// Cached stages are counted, not listed. Lines are written whole, under one lock for all trials.
#include <cstdio>
#include <map>
#include <mutex>
#include <string>

#include "pipeline/exec/executor.h"

namespace petal {

class TrialProgress : public ExecutionObserver {
 public:
  // `trial_of_run`: petal run id -> trial id, to name the trial that built a shared stage.
  TrialProgress(std::FILE* out, std::mutex& lock, std::string trial_id, const std::map<std::string, std::string>& trial_of_run)
      : out_(out), lock_(lock), id_(std::move(trial_id)), trial_of_run_(trial_of_run) {}
  void on_stage_start(const StagePlan& plan) override;
  void on_stage_end(const StagePlan& plan, const StageOutcome& outcome) override;
  void on_heartbeat(const StagePlan& plan, double seconds) override;
  // A line of the trial's own (not about a stage), e.g. its start and its result.
  void say(const std::string& text);

 private:
  std::FILE* out_;
  std::mutex& lock_;
  std::string id_;
  const std::map<std::string, std::string>& trial_of_run_;
};

}  // namespace petal
