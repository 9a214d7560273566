#include "pipeline/exec/progress.h"

#include <sstream>

#include "pipeline/cache/explain.h"
#include "pipeline/util/units.h"

namespace petal {

ProgressPrinter::ProgressPrinter(std::FILE* out, std::size_t total, const std::string& experiment, const RunLog* log,
                                 const StageCache* cache, bool explain)
    : out_(out), total_(total), experiment_(experiment), log_(log), cache_(cache), explain_(explain) {}

std::string ProgressPrinter::prefix(const StagePlan& plan) const {
  std::string name = plan.node->name();
  std::ostringstream text;
  text << "[" << (plan.node->index + 1) << "/" << total_ << "] " << name;
  for (std::size_t i = name.size(); i < 10; ++i) text << ' ';
  return text.str();
}

void ProgressPrinter::on_stage_start(const StagePlan& plan) {
  std::fprintf(out_, "%s  running   (%s)\n", prefix(plan).c_str(), short_key(plan.key).c_str());
  if (explain_ && log_ && cache_) {
    for (const auto& reason : explain_stage(plan, experiment_, *log_, *cache_)) {
      std::fprintf(out_, "      why: %s\n", reason.c_str());
    }
  }
  std::fflush(out_);
}

void ProgressPrinter::on_stage_end(const StagePlan& plan, const StageOutcome& outcome) {
  const std::string head = prefix(plan);
  switch (outcome.status) {
    case StageStatus::Cached:
      std::fprintf(out_, "%s  cached    (%s)%s\n", head.c_str(), short_key(plan.key).c_str(),
                   outcome.built_concurrently ? " built by a concurrent run" : "");
      break;
    case StageStatus::Ran:
      std::fprintf(out_, "%s  done in %s (%s)\n", head.c_str(), format_seconds(outcome.seconds).c_str(),
                   short_key(plan.key).c_str());
      for (const auto& note : outcome.report.notes) std::fprintf(out_, "      %s\n", note.c_str());
      break;
    case StageStatus::Failed:
      std::fprintf(out_, "%s  FAILED after %s: %s\n", head.c_str(), format_seconds(outcome.seconds).c_str(),
                   outcome.error.c_str());
      if (!outcome.log_tail.empty()) {
        std::fprintf(out_, "      --- last lines of the stage's log ---\n");
        std::istringstream lines(outcome.log_tail);
        for (std::string line; std::getline(lines, line);) std::fprintf(out_, "      %s\n", line.c_str());
      }
      break;
    case StageStatus::Interrupted:
      std::fprintf(out_, "%s  interrupted after %s (nothing committed)\n", head.c_str(),
                   format_seconds(outcome.seconds).c_str());
      break;
    case StageStatus::Skipped:
      std::fprintf(out_, "%s  skipped\n", head.c_str());
      break;
  }
  std::fflush(out_);
}

void ProgressPrinter::on_heartbeat(const StagePlan& plan, double seconds) {
  std::fprintf(out_, "%s  still running (%s)\n", prefix(plan).c_str(), format_seconds(seconds).c_str());
  std::fflush(out_);
}

void ProgressPrinter::print_summary(const RunResult& result) {
  std::fprintf(out_, "petal: %zu ran, %zu cached", result.count(StageStatus::Ran), result.count(StageStatus::Cached));
  if (const auto failed = result.count(StageStatus::Failed)) std::fprintf(out_, ", %zu failed", failed);
  if (const auto skipped = result.count(StageStatus::Skipped)) std::fprintf(out_, ", %zu skipped", skipped);
  if (const auto interrupted = result.count(StageStatus::Interrupted)) {
    std::fprintf(out_, ", %zu interrupted", interrupted);
  }
  std::fprintf(out_, " in %s\n", format_seconds(result.seconds).c_str());
  std::fflush(out_);
}

}  // namespace petal
