// The Slurm side of cluster_job.h: an sbatch script for a job array, task N running trial N. The
// #SBATCH lines carry only values petal made safe (a sanitized name, numbers, a checked time and
// partition, a relative log name); paths appear only in the script's body, as quoted shell words.
// Run by bash without Slurm, the directives are comments and the body runs the trial named by
// $SLURM_ARRAY_TASK_ID — which is how the tests run it.
#include <algorithm>
#include <cctype>
#include <sstream>

#include "pipeline/sweep/cluster_job.h"
#include "pipeline/util/quoting.h"

namespace petal {

namespace {

std::string slurm_job_name(const std::string& sweep_name) {
  std::string name = "petal-";
  for (unsigned char c : sweep_name.substr(0, 58)) name += std::isalnum(c) || c == '-' || c == '_' || c == '.' ? static_cast<char>(c) : '_';
  return name;
}

}  // namespace

std::string slurm_array_script(const ClusterJob& job) {
  check_cluster_job(job);
  const std::string name = slurm_job_name(job.sweep_name);
  const std::string file = job.output_name.empty() ? "FILE" : job.output_name;
  const int parallelism = std::max(1, std::min(job.parallelism, static_cast<int>(job.trials)));
  // Slurm opens the log before the script runs: a name relative to where sbatch is run, which
  // always exists ("%A_%a": the array's job id and the task's index).
  const std::string log = "petal-" + job.sweep_id + "-%A_%a.out";
  const std::string summary = "cd " + shell_quote(job.work_dir) + " && exec " + summary_command(job);
  std::string summary_submit = "sbatch --dependency=afterany:\"$jobid\" --job-name=" + name + "-summary" +
                               " --cpus-per-task=1 --time=01:00:00";
  if (!job.partition.empty()) summary_submit += " --partition=" + job.partition;
  summary_submit += " --output=petal-" + job.sweep_id + "-summary-%j.out --wrap=" + shell_quote(summary);

  std::ostringstream s;
  s << "#!/bin/bash\n"
    << "#SBATCH --job-name=" << name << "\n"
    << "#SBATCH --array=0-" << job.trials - 1 << "%" << parallelism << "\n"
    << "#SBATCH --cpus-per-task=" << job.cpus << "\n"
    << "#SBATCH --mem=" << job.memory_gib << "G\n"
    << "#SBATCH --time=" << job.time_limit << "\n"
    << "#SBATCH --output=" << log << "\n";
  if (!job.partition.empty()) s << "#SBATCH --partition=" << job.partition << "\n";
  if (job.gpus > 0) s << "#SBATCH --gpus-per-task=" << job.gpus << "\n";
  s << "#\n"
    << "# petal sweep " << job.sweep_id << ": " << job.trials << " trials, " << parallelism << " at once.\n"
    << "# Written by `petal sweep --emit slurm`; the same sweep and options give the same file.\n"
    << "# Array task N runs trial N (`petal sweep --list` order) in " << job.work_dir << ",\n"
    << "# every task sharing the state folder " << job.state_dir << ".\n"
    << "#\n"
    << "# Submit the trials, then the summary (the comparison, the parent MLflow run's artifacts), which\n"
    << "# runs once every trial has ended, whatever its outcome:\n"
    << "#   jobid=$(sbatch --parsable " << shell_quote(file) << ")\n"
    << "#   " << summary_submit << "\n"
    << "# A failed trial runs again with `sbatch --array=N " << shell_quote(file) << "`; finished trials never re-run.\n"
    << "set -euo pipefail\n"
    << "if [ -z \"${SLURM_ARRAY_TASK_ID:-}\" ]; then\n"
    << "  echo \"petal: error: SLURM_ARRAY_TASK_ID is not set: submit this job array with sbatch, or set it to\"\\\n"
    << "       \"a trial's index to run that trial here\" >&2\n"
    << "  exit 2\n"
    << "fi\n";
  if (job.needs_tracking_uri) {
    // Without a shared server each node would start petal's embedded one: the sweep's runs would
    // end up scattered over several servers.
    s << "case \"${MLFLOW_TRACKING_URI:-}:${PETAL_TRACKING:-on}\" in\n"
      << "  :off | :0 | :false) ;;  # untracked\n"
      << "  :*)\n"
      << "    echo \"petal: error: MLFLOW_TRACKING_URI is not set; the trials need one MLflow server that every node\"\\\n"
      << "         \"reaches: export it before sbatch (or PETAL_TRACKING=off to run untracked)\" >&2\n"
      << "    exit 2 ;;\n"
      << "esac\n";
  }
  s << "export PETAL_THREADS=\"${SLURM_CPUS_PER_TASK:-" << job.cpus << "}\"\n"
    << "cd " << shell_quote(job.work_dir) << "\n"
    << "exec " << trial_command(job, "SLURM_ARRAY_TASK_ID") << "\n";
  return s.str();
}

}  // namespace petal
