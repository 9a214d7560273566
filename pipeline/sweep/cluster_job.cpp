#include "pipeline/sweep/cluster_job.h"

#include <cctype>

#include "pipeline/util/error.h"
#include "pipeline/util/quoting.h"

namespace petal {

namespace {

void refuse_control_characters(const std::string& what, const std::string& value) {
  if (const int c = first_control_character(value); c >= 0) {
    throw PetalError(what + " contains a control character (code " + std::to_string(c) +
                     "), which petal cannot write safely into a job file; rename it or pass another value");
  }
}

bool is_kubernetes_name(const std::string& name) {
  if (name.empty() || name.size() > 253) return false;
  for (unsigned char c : name) {
    if (!(std::islower(c) || std::isdigit(c) || c == '-' || c == '.')) return false;
  }
  return std::isalnum(static_cast<unsigned char>(name.front())) && std::isalnum(static_cast<unsigned char>(name.back()));
}

bool only(const std::string& text, const std::string& allowed_punctuation) {
  for (unsigned char c : text) {
    if (!std::isalnum(c) && allowed_punctuation.find(static_cast<char>(c)) == std::string::npos) return false;
  }
  return true;
}

std::string petal_words(const ClusterJob& job, const std::string& tail) {
  std::string words = shell_quote(job.petal) + " --state-dir " + shell_quote(job.state_dir) + " sweep " +
                      shell_quote(job.sweep_file) + " " + tail;
  for (const auto& flag : job.flags) words += " " + shell_quote(flag);
  return words;
}

}  // namespace

void check_cluster_job(const ClusterJob& job) {
  refuse_control_characters("the petal executable's path", job.petal);
  refuse_control_characters("the sweep file's path", job.sweep_file);
  refuse_control_characters("the state folder's path", job.state_dir);
  refuse_control_characters("the working folder's path", job.work_dir);
  refuse_control_characters("-o", job.output_name);
  refuse_control_characters("--image", job.image);
  refuse_control_characters("--datasets-mount", job.datasets_mount);
  for (const auto& flag : job.flags) refuse_control_characters("a flag", flag);
  if (job.trials == 0) throw PetalError("the sweep has no trials: there is nothing to emit");
  if (job.image.empty()) throw PetalError("--image is empty; name the image that has petal, e.g. --image petal:latest");
  const auto kubernetes_name = [](const std::string& option, const std::string& value) {
    if (!is_kubernetes_name(value)) {
      throw PetalError(option + " '" + value + "' is not a Kubernetes object name: use lowercase letters, digits, '-' "
                       "and '.', starting and ending with a letter or digit");
    }
  };
  kubernetes_name("--pvc", job.state_claim);
  if (!job.datasets_claim.empty()) kubernetes_name("--datasets-pvc", job.datasets_claim);
  kubernetes_name("--secret", job.secret);
  if (job.datasets_mount.empty() || job.datasets_mount.front() != '/') {
    throw PetalError("--datasets-mount '" + job.datasets_mount + "' must be an absolute path, e.g. /datasets");
  }
  if (job.time_limit.empty() || !only(job.time_limit, ":-")) {
    throw PetalError("--time '" + job.time_limit + "' is not a Slurm time limit; write minutes, H:MM:SS or D-HH:MM:SS, "
                     "e.g. --time 12:00:00");
  }
  if (!only(job.partition, "_.,-")) {
    throw PetalError("--partition '" + job.partition + "' is not a Slurm partition name (letters, digits, '_', '-', '.'; "
                     "several separated by ',')");
  }
}

std::string trial_command(const ClusterJob& job, const std::string& index_variable) {
  return petal_words(job, "--trial-index \"$" + index_variable + "\"");
}

std::string summary_command(const ClusterJob& job) { return petal_words(job, "--summarize"); }

std::string kubernetes_job_name(const ClusterJob& job) {
  std::string name;
  for (unsigned char c : job.sweep_name) {
    const char lower = static_cast<char>(std::tolower(c));
    if (std::isalnum(static_cast<unsigned char>(lower)) && c < 0x80) {
      name += lower;
    } else if (!name.empty() && name.back() != '-') {
      name += '-';
    }
  }
  name = name.substr(0, 29);
  while (!name.empty() && name.back() == '-') name.pop_back();
  if (name.empty()) name = "sweep";
  const std::string digest = job.sweep_id.substr(job.sweep_id.rfind('-') + 1);
  return "petal-" + name + "-" + digest.substr(0, 8);
}

}  // namespace petal
