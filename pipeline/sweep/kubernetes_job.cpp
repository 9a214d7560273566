// The Kubernetes side of cluster_job.h: an Indexed Job whose completion index is the trial's index,
// and a suspended Job that summarizes once resumed. Written by hand, block style, every string a
// double-quoted YAML scalar, so no value can change the document's structure.
#include <algorithm>
#include <sstream>

#include "pipeline/sweep/cluster_job.h"
#include "pipeline/util/quoting.h"

namespace petal {

namespace {

// MLflow's own variables, read by petal's client (README "Tracking with MLflow"); only the URI may
// be required, the rest are optional keys of the Secret.
const char* const kMlflowSecretKeys[] = {"MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN",
                                         "MLFLOW_TRACKING_INSECURE_TLS"};

std::string q(const std::string& text) { return yaml_quote(text); }

void write_labels(std::ostream& y, const std::string& indent, const ClusterJob& job, const std::string& component) {
  const std::string digest = job.sweep_id.substr(job.sweep_id.rfind('-') + 1);
  y << indent << "labels:\n"
    << indent << "  app.kubernetes.io/name: \"petal\"\n"
    << indent << "  app.kubernetes.io/component: " << q(component) << "\n"
    << indent << "  petal.dev/sweep-digest: " << q(digest) << "\n";
}

// The pod template both Jobs share; only the container's name and command differ.
void write_pod_template(std::ostream& y, const ClusterJob& job, const std::string& component,
                        const std::string& container, const std::string& shell_command) {
  const std::string memory = std::to_string(job.memory_gib) + "Gi";
  y << "  template:\n"
    << "    metadata:\n";
  write_labels(y, "      ", job, component);
  y << "    spec:\n"
    << "      restartPolicy: Never\n"
    << "      containers:\n"
    << "        - name: " << q(container) << "\n"
    << "          image: " << q(job.image) << "\n"
    << "          command:\n"
    << "            - \"/bin/sh\"\n"
    << "            - \"-c\"\n"
    << "            - " << q(shell_command) << "\n"
    << "          env:\n"
    << "            - name: \"PETAL_THREADS\"\n"
    << "              value: " << q(std::to_string(job.cpus)) << "\n"
    // Downloads and pretrained weights once for all pods, beside the cache (both are locked per file).
    << "            - name: \"PETAL_DOWNLOAD_CACHE\"\n"
    << "              value: " << q(job.state_dir + "/downloads") << "\n"
    << "            - name: \"PETAL_WEIGHTS_DIR\"\n"
    << "              value: " << q(job.state_dir + "/weights") << "\n";
  if (!job.datasets_claim.empty()) {
    y << "            - name: \"PETAL_DATASETS\"\n"
      << "              value: " << q(job.datasets_mount) << "\n";
  }
  y << "            - name: \"MLFLOW_TRACKING_URI\"\n"
    << "              valueFrom:\n"
    << "                secretKeyRef:\n"
    << "                  name: " << q(job.secret) << "\n"
    << "                  key: \"MLFLOW_TRACKING_URI\"\n"
    << "                  optional: " << (job.needs_tracking_uri ? "false" : "true") << "\n";
  for (const char* key : kMlflowSecretKeys) {
    y << "            - name: " << q(key) << "\n"
      << "              valueFrom:\n"
      << "                secretKeyRef:\n"
      << "                  name: " << q(job.secret) << "\n"
      << "                  key: " << q(key) << "\n"
      << "                  optional: true\n";
  }
  y << "          resources:\n"
    << "            requests:\n"
    << "              cpu: " << q(std::to_string(job.cpus)) << "\n"
    << "              memory: " << q(memory) << "\n"
    << "            limits:\n"
    << "              memory: " << q(memory) << "\n";
  if (job.gpus > 0) y << "              nvidia.com/gpu: " << q(std::to_string(job.gpus)) << "\n";
  y << "          volumeMounts:\n"
    << "            - name: \"petal-state\"\n"
    << "              mountPath: " << q(job.state_dir) << "\n";
  if (!job.datasets_claim.empty()) {
    y << "            - name: \"datasets\"\n"
      << "              mountPath: " << q(job.datasets_mount) << "\n"
      << "              readOnly: true\n";
  }
  y << "      volumes:\n"
    << "        - name: \"petal-state\"\n"
    << "          persistentVolumeClaim:\n"
    << "            claimName: " << q(job.state_claim) << "\n";
  if (!job.datasets_claim.empty()) {
    y << "        - name: \"datasets\"\n"
      << "          persistentVolumeClaim:\n"
      << "            claimName: " << q(job.datasets_claim) << "\n"
      << "            readOnly: true\n";
  }
}

void write_metadata(std::ostream& y, const ClusterJob& job, const std::string& name, const std::string& component) {
  y << "apiVersion: batch/v1\n"
    << "kind: Job\n"
    << "metadata:\n"
    << "  name: " << q(name) << "\n";
  write_labels(y, "  ", job, component);
  y << "  annotations:\n"
    << "    petal.dev/sweep-id: " << q(job.sweep_id) << "\n"
    << "    petal.dev/sweep-file: " << q(job.sweep_file) << "\n";
}

}  // namespace

std::string kubernetes_job_manifest(const ClusterJob& job) {
  check_cluster_job(job);
  const std::string name = kubernetes_job_name(job);
  const std::string file = job.output_name.empty() ? "FILE" : job.output_name;
  const int parallelism = std::max(1, std::min(job.parallelism, static_cast<int>(job.trials)));
  std::ostringstream y;
  y << "# petal sweep " << job.sweep_id << ": " << job.trials << " trials, " << parallelism << " at once.\n"
    << "# Written by `petal sweep --emit kubernetes`; the same sweep and options give the same file.\n"
    << "# Job " << name << " is an Indexed Job: completion index N runs trial N\n"
    << "# (`petal sweep --list` order) with `petal sweep --trial-index $JOB_COMPLETION_INDEX`.\n"
    << "#\n"
    << "# It needs Kubernetes 1.29 or later (backoffLimitPerIndex, podReplacementPolicy) and, in its namespace:\n"
    << "#   PersistentVolumeClaim " << job.state_claim << " (ReadWriteMany): petal's state folder (cache, sweep state,\n"
    << "#     MLflow spools), shared by every pod, mounted at " << job.state_dir << ";\n";
  if (!job.datasets_claim.empty()) {
    y << "#   PersistentVolumeClaim " << job.datasets_claim << ": the datasets, mounted read-only at " << job.datasets_mount
      << " ($PETAL_DATASETS);\n";
  }
  y << "#   Secret " << job.secret << ": key MLFLOW_TRACKING_URI" << (job.needs_tracking_uri ? "" : " (optional here)")
    << ", and optionally MLFLOW_TRACKING_USERNAME,\n"
    << "#     MLFLOW_TRACKING_PASSWORD, MLFLOW_TRACKING_TOKEN, MLFLOW_TRACKING_INSECURE_TLS;\n"
    << "#   the image " << job.image << " (the repository's Dockerfile), with " << job.petal << " and " << job.sweep_file << "\n"
    << "#     in its working directory.\n"
    << "#\n"
    << "# Run the trials; once the Job has ended (condition Complete, or Failed when a trial failed\n"
    << "# " << job.retries_per_trial + 1 << " times), resume the summary Job, which builds the comparison and ends the\n"
    << "# parent MLflow run:\n"
    << "#   kubectl apply -f " << shell_quote(file) << "\n"
    << "#   kubectl wait --for=condition=complete --timeout=-1s job/" << name << "\n"
    << "#   kubectl patch job/" << name << "-summary --type=merge -p '{\"spec\":{\"suspend\":false}}'\n"
    << "# The sweep id above was computed with $PETAL_DATASETS at the mount, as in the pods; they\n"
    << "# print theirs, which differs only if other paths of the experiment resolve differently there.\n";

  y << "---\n";
  write_metadata(y, job, name, "sweep-trial");
  y << "spec:\n"
    << "  completionMode: Indexed\n"
    << "  completions: " << job.trials << "\n"
    << "  parallelism: " << parallelism << "\n"
    // A failed trial is retried on its own; the others go on. backoffLimit only caps the total,
    // set so that it never binds before the per-index limits do.
    << "  backoffLimitPerIndex: " << job.retries_per_trial << "\n"
    << "  backoffLimit: " << job.trials * static_cast<std::size_t>(job.retries_per_trial + 1) << "\n"
    // A replacement pod starts only once the old one is gone: both would want the trial's lock.
    << "  podReplacementPolicy: Failed\n"
    << "  podFailurePolicy:\n"
    << "    rules:\n"
    // Evicted or preempted: not the trial's fault; it resumes from its last epoch checkpoint.
    << "      - action: Ignore\n"
    << "        onPodConditions:\n"
    << "          - type: DisruptionTarget\n"
    << "            status: \"True\"\n"
    // Exit code 2: a bad sweep file or command line, which a retry would only repeat.
    << "      - action: FailIndex\n"
    << "        onExitCodes:\n"
    << "          containerName: \"trial\"\n"
    << "          operator: In\n"
    << "          values: [2]\n";
  write_pod_template(y, job, "sweep-trial", "trial", "exec " + trial_command(job, "JOB_COMPLETION_INDEX"));

  y << "---\n";
  write_metadata(y, job, name + "-summary", "sweep-summary");
  y << "spec:\n"
    << "  suspend: true\n"
    << "  completions: 1\n"
    << "  parallelism: 1\n"
    << "  backoffLimit: 2\n"
    << "  podFailurePolicy:\n"
    << "    rules:\n"
    // 1: some trial did not finish (the comparison is written all the same); 2: bad input. Retrying
    // changes neither; other failures (the tracking server away, a lost node) are worth a retry.
    << "      - action: FailJob\n"
    << "        onExitCodes:\n"
    << "          containerName: \"summary\"\n"
    << "          operator: In\n"
    << "          values: [1, 2]\n";
  write_pod_template(y, job, "sweep-summary", "summary", "exec " + summary_command(job));
  return y.str();
}

}  // namespace petal
