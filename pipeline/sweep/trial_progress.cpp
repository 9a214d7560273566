#include "pipeline/sweep/trial_progress.h"

#include "pipeline/util/units.h"

namespace petal {

void TrialProgress::say(const std::string& text) {
  std::lock_guard<std::mutex> guard(lock_);
  std::fprintf(out_, "[%s] %s\n", id_.c_str(), text.c_str());
  std::fflush(out_);
}

void TrialProgress::on_stage_start(const StagePlan& plan) {
  say(plan.node->name() + " running (" + plan.key.substr(0, 8) + ")");
}

void TrialProgress::on_stage_end(const StagePlan& plan, const StageOutcome& outcome) {
  const std::string name = plan.node->name();
  const std::string key = " (" + plan.key.substr(0, 8) + ")";
  switch (outcome.status) {
    case StageStatus::Cached:
      if (outcome.built_concurrently) {
        const auto trial = trial_of_run_.find(outcome.built_by_run);
        say(name + " shared: built meanwhile by " + (trial != trial_of_run_.end() ? trial->second : "run " + outcome.built_by_run) + key);
      }
      return;
    case StageStatus::Ran:
      say(name + " ran in " + format_seconds(outcome.seconds) + key);
      return;
    case StageStatus::Failed:
      say(name + " FAILED: " + outcome.error);
      return;
    case StageStatus::Interrupted:
      say(name + " interrupted");
      return;
    case StageStatus::Skipped:
      return;
  }
}

void TrialProgress::on_heartbeat(const StagePlan& plan, double seconds) {
  say(plan.node->name() + " still running (" + format_seconds(seconds) + ")");
}

}  // namespace petal
