#pragma once
// A sweep as a cluster job (`petal sweep FILE --emit kubernetes|slurm`): one array task per trial,
// each running `petal sweep FILE --trial-index <its index>` (sweep_trial_runner.h) against one
// shared state folder, then a summary step (`--summarize`) once every trial has ended.
//   kubernetes_job_manifest: a batch/v1 Indexed Job (index = $JOB_COMPLETION_INDEX) plus a
//     suspended summary Job, in one multi-document YAML;
//   slurm_array_script: an sbatch job-array script (index = $SLURM_ARRAY_TASK_ID) whose header
//     shows how to submit it and its dependent summary job.
// The output depends only on the spec: the same sweep and options give the same bytes. Every value
// is quoted for where it lands (YAML scalars, shell words); values that cannot be written safely
// (control characters) are refused by check_cluster_job.
#include <string>
#include <vector>

namespace petal {

struct ClusterJob {
  // The sweep.
  std::string sweep_name;
  std::string sweep_id;          // <name>-<12 hex digits>, as petal computed it where the file was emitted
  std::size_t trials = 0;
  int parallelism = 1;           // trials at once (1 ≤ parallelism ≤ trials)
  // How each task runs petal.
  std::string petal = "petal";   // the executable: slurm: an absolute path; kubernetes: its path in the image
  std::string sweep_file;        // relative to the task's working directory, or absolute
  std::string state_dir;         // the shared state folder (kubernetes: where its volume is mounted)
  std::vector<std::string> flags;  // more of `petal sweep`'s flags, e.g. --no-tracking
  // Tracking is on and the experiment names no server: every task needs $MLFLOW_TRACKING_URI (an
  // embedded server per machine would split the sweep over many servers).
  bool needs_tracking_uri = false;
  // Resources of each task.
  int cpus = 4;
  int memory_gib = 8;
  int gpus = 0;
  std::string output_name;       // the emitted file's name, for the commands in its header ("" = FILE)

  // Kubernetes.
  std::string image = "petal:latest";
  std::string state_claim = "petal-state";        // ReadWriteMany PersistentVolumeClaim with the state folder
  std::string datasets_claim = "petal-datasets";  // PersistentVolumeClaim with the datasets ("" = none)
  std::string datasets_mount = "/datasets";       // where it is mounted; $PETAL_DATASETS
  std::string secret = "petal-mlflow";            // Secret with MLFLOW_TRACKING_URI and credentials
  int retries_per_trial = 2;                      // backoffLimitPerIndex

  // Slurm.
  std::string work_dir;          // absolute: where each task runs (the shared project folder)
  std::string time_limit = "24:00:00";
  std::string partition;         // "" = the cluster's default
};

// Throws PetalError naming the offending option (or path) and how to fix it.
void check_cluster_job(const ClusterJob& job);

std::string kubernetes_job_manifest(const ClusterJob& job);
std::string slurm_array_script(const ClusterJob& job);

// The petal command line (shell words, quoted) a task runs: one trial, the index taken from the
// shell variable `index_variable`; or the summary.
std::string trial_command(const ClusterJob& job, const std::string& index_variable);
std::string summary_command(const ClusterJob& job);

// A name Kubernetes accepts for a Job (an RFC 1123 label: [a-z0-9-], at most 52 characters so that
// "<name>-summary" and the pods' "<name>-<index>" host names fit in 63): petal-<name>-<8 hex>.
std::string kubernetes_job_name(const ClusterJob& job);

}  // namespace petal
