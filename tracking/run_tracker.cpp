#include "tracking/run_tracker.h"

#include <cctype>
#include <cstdlib>
#include <fstream>
#include <set>

#include "pipeline/util/cancel.h"
#include "pipeline/util/fs.h"
#include "tracking/git_info.h"
#include "tracking/local_server.h"
#include "tracking/model_promotion.h"
#include "tracking/mlflow_limits.h"

namespace petal {

using nlohmann::json;

namespace {

std::string env(const char* name) {
  const char* value = std::getenv(name);
  return value ? value : "";
}

std::string param_text(const json& value) {
  std::string text = value.is_string() ? value.get<std::string>() : value.dump();
  if (text.size() > mlflow::kMaxParamValueLength) text = text.substr(0, mlflow::kMaxParamValueLength - 3) + "...";
  return text;
}

// MLflow keys allow letters, digits and _ - . space : / only; stage and metric names may hold more.
std::string mlflow_key(const std::string& name) {
  std::string key;
  for (unsigned char c : name) {
    key += (std::isalnum(c) || c == '_' || c == '-' || c == '.' || c == ' ' || c == ':' || c == '/') ? static_cast<char>(c) : '_';
  }
  for (std::size_t at; (at = key.find("..")) != std::string::npos;) key.replace(at, 2, "._");
  while (!key.empty() && key.front() == '/') key.erase(0, 1);
  return key.substr(0, mlflow::kMaxKeyLength);
}

}  // namespace

TrackingTarget resolve_tracking(const Experiment& experiment, const Project& project, std::FILE* out) {
  TrackingTarget target;
  const std::string switch_text = env("PETAL_TRACKING");
  if (!experiment.tracking.enabled || switch_text == "off" || switch_text == "0" || switch_text == "false") return target;
  target.enabled = true;
  target.uri = !experiment.tracking.uri.empty() ? experiment.tracking.uri : env("MLFLOW_TRACKING_URI");
  if (!target.uri.empty()) return target;
  target.embedded = true;
  LocalMlflowServer server(project.state_dir / "mlflow");
  try {
    if (!std::filesystem::exists(project.state_dir / "mlflow" / "server.json")) {
      std::fprintf(out, "petal: starting the local MLflow server under %s (first run only)\n",
                   (project.state_dir / "mlflow").c_str());
      std::fflush(out);
    }
    target.uri = server.ensure_running();
  } catch (const PetalError& e) {
    target.problem = e.what();
  }
  return target;
}

RunTracker::RunTracker(const Experiment& experiment, const Plan& plan, const Project& project,
                       const TrackingTarget& target, const std::string& petal_run_id, const StageCache& cache,
                       const RunTrackerOptions& options)
    : experiment_(experiment),
      cache_(cache),
      uri_(target.uri),
      embedded_(target.embedded),
      spool_dir_(project.state_dir / "spool") {
  if (!target.uri.empty()) client_ = std::make_shared<mlflow::Client>(target.uri);
  logger_ = std::make_unique<mlflow::RunLogger>(mlflow::make_logger_client(target.uri), spool_dir_, petal_run_id);

  std::vector<mlflow::Tag> tags = {
      {"mlflow.source.name", std::filesystem::absolute(experiment.file).lexically_normal().string()},
      {"mlflow.source.type", "LOCAL"},
      {"petal.run_id", petal_run_id},
      {"petal.experiment_file", experiment.file.string()},
  };
  if (const std::string user = env("USER"); !user.empty()) tags.push_back({"mlflow.user", user});
  if (const std::string commit = git_commit_of(experiment.file.parent_path().empty() ? "." : experiment.file.parent_path());
      !commit.empty()) {
    tags.push_back({"mlflow.source.git.commit", commit});
  }
  if (!experiment.description.empty()) tags.push_back({"mlflow.note.content", experiment.description});
  tags.insert(tags.end(), options.tags.begin(), options.tags.end());
  mlflow_experiment_ = experiment.tracking.experiment.empty() ? experiment.name : experiment.tracking.experiment;
  logger_->start_run(mlflow_experiment_, options.run_name.empty() ? experiment.name + "-" + petal_run_id : options.run_name,
                     tags, now_ms(),
                     target.embedded ? "" : strip_credentials(target.uri));
  for (const auto& stage : experiment.stages) {
    for (const auto& [key, value] : stage.params) logger_->log_param(mlflow_key(stage.name + "." + key), param_text(value.value));
  }
  for (const auto& sp : plan.stages) logger_->set_tag(mlflow_key("petal.stage." + sp.node->name() + ".key"), sp.key);
  logger_->journal();  // the run exists on disk before any stage starts: a kill cannot lose it
}

RunTracker::~RunTracker() = default;

void RunTracker::on_stage_end(const StagePlan& plan, const StageOutcome& outcome) {
  const std::string stage = mlflow_key(plan.node->name());
  const std::string prefix = "petal.stage." + stage;
  logger_->set_tag(prefix + ".status", to_string(outcome.status));
  if (outcome.status == StageStatus::Cached && !outcome.built_by_run.empty()) {
    logger_->set_tag(prefix + ".built_by_run", outcome.built_by_run);
    reused_from_[outcome.built_by_run].push_back(stage);
  }
  if (outcome.status == StageStatus::Failed && first_error_.empty()) {
    first_error_ = plan.node->name() + ": " + outcome.error;
  }
  if (outcome.status != StageStatus::Cached && outcome.status != StageStatus::Ran) return;
  std::set<std::string> with_series;
  for (const auto& point : outcome.report.series) {
    logger_->log_metric_at(mlflow_key(stage + "." + point.name), point.value, point.step, point.timestamp_ms);
    with_series.insert(point.name);
  }
  for (const auto& [name, value] : outcome.report.metrics.items()) {
    if (value.is_number() && !with_series.count(name)) logger_->log_metric(mlflow_key(stage + "." + name), value.get<double>(), 0);
  }
  for (const auto& artifact : outcome.report.artifacts) {
    // A file lands in its folder under the stage's name; a folder keeps its own name
    // (evaluate's "model" folder becomes <run>/artifacts/evaluate/model/...).
    const std::filesystem::path local = cache_.out_dir(plan.key) / artifact;
    std::error_code ec;
    const std::string folder = std::filesystem::is_directory(local, ec)
                                   ? std::filesystem::path(artifact).lexically_normal().generic_string()
                                   : std::filesystem::path(artifact).parent_path().generic_string();
    logger_->log_artifact(local, stage + (folder.empty() || folder == "." ? "" : "/" + folder));
  }
  // A stage that publishes dataset.json (download) becomes the run's dataset input.
  const auto dataset_file = cache_.out_dir(plan.key) / "dataset.json";
  if (stat_path(dataset_file)) {
    try {
      const json dataset = json::parse(read_text_file(dataset_file));
      mlflow::Dataset input;
      input.name = experiment_.name + "/" + plan.node->name();
      input.digest = dataset.value("digest", "").substr(0, 36);
      const std::string from = dataset.value("from", "");
      input.source_type = from.rfind("http://", 0) == 0 || from.rfind("https://", 0) == 0 ? "http" : "local";
      input.source = json{{"uri", dataset.value("from", "")}}.dump();
      input.profile = json{{"images", dataset.value("images", 0)}, {"classes", dataset.value("classes", json::object())}}.dump();
      input.tags = {{"mlflow.data.context", "training"}};
      logger_->log_inputs({input});
    } catch (const std::exception&) {
      // not a dataset description petal understands: nothing to log
    }
  }
  // A built stage's results are on disk before the run log records it: a kill keeps them. (A
  // cached stage's values are re-logged copies; they reach the spool within the flush interval.)
  if (outcome.status == StageStatus::Ran) logger_->journal();
}

RegistrationResult RunTracker::register_model(const ModelRegistration& request) {
  logger_->flush();
  const std::string run_id = logger_->run_id();
  if (logger_->refused()) {
    throw PetalError("cannot register the model: the MLflow server refused this run's tracking (" + logger_->last_error() +
                         "); fix the cause, `petal sync` the spooled run, and re-run `petal run` (register is not "
                         "cached until it succeeds)",
                     {}, kExitEnvironment);
  }
  if (!client_ || logger_->offline() || run_id.empty()) {
    const std::string why = logger_->last_error().empty() ? "no tracking server" : logger_->last_error();
    throw PetalError("cannot register the model: the MLflow tracking server is not reachable (" + why +
                         "); the run's values are spooled for `petal sync`, but registering needs the server — "
                         "re-run `petal run` when it is reachable (register is not cached until it succeeds)",
                     {}, kExitEnvironment);
  }
  // Its own client: the logger's background thread keeps using client_.
  mlflow::Client client(uri_);
  const mlflow::Run run = client.get_run(run_id);
  ModelRegistration tagged = request;
  if (const auto commit = run.tags.find("mlflow.source.git.commit"); commit != run.tags.end()) {
    tagged.tags["petal.git_commit"] = commit->second;
  }
  tagged.tags["petal.run_id"] = run.tags.count("petal.run_id") ? run.tags.at("petal.run_id") : "";
  return mlflow::register_and_promote(client, run.info, tagged);
}

int RunTracker::finish(const RunResult& result, std::FILE* out) {
  std::string status = "FINISHED";
  if (result.exit_code == kExitInterrupted) status = "KILLED";
  else if (result.exit_code != kExitOk) status = "FAILED";
  if (!first_error_.empty()) logger_->set_tag("petal.error", first_error_.substr(0, 8000));
  logger_->link_builders(mlflow_experiment_, reused_from_);  // resolved on delivery, here or by `petal sync`
  logger_->end_run(status);
  const std::string run_id = logger_->run_id();
  if (logger_->refused()) {
    std::fprintf(out,
                 "petal: error: the MLflow server refused this run's tracking: %s\n"
                 "petal: nothing was lost: %llu values and every artifact are in %s; fix the cause, then run `petal sync` "
                 "(`petal sync --uri URL` sends it to another server)\n",
                 logger_->last_error().c_str(), static_cast<unsigned long long>(logger_->values_logged()),
                 logger_->spool_file().c_str());
    std::fflush(out);
    return kExitEnvironment;
  }
  if (!logger_->offline() && !run_id.empty()) {
    std::fprintf(out, "petal: MLflow run %s at %s\n", run_id.c_str(), redact_url(uri_).c_str());
    if (!logger_->last_error().empty()) {
      std::fprintf(out, "petal: warning: part of the run was not sent: %s\n", logger_->last_error().c_str());
    }
    if (!Interrupt::requested()) recover_abandoned_runs(out);
  } else {
    std::fprintf(out, "petal: tracking is offline (%s); %llu values are safe in %s — run `petal sync` later\n",
                 logger_->last_error().empty() ? "no server" : logger_->last_error().c_str(),
                 static_cast<unsigned long long>(logger_->values_logged()), logger_->spool_file().c_str());
  }
  std::fflush(out);
  return kExitOk;
}

// Spools of earlier runs on the same server whose petal is gone (killed, or offline at the time):
// delivered now, and a run left RUNNING by a kill is ended as KILLED.
void RunTracker::recover_abandoned_runs(std::FILE* out) {
  const std::string own = logger_->spool_file().filename().string();
  bool others = false;
  for (const auto& file : mlflow::Spool::pending(spool_dir_)) others = others || file.filename() != own;
  if (!others || !client_) return;
  const std::string server = embedded_ ? "" : strip_credentials(uri_);
  const mlflow::SyncReport report = mlflow::sync_spools(
      [&](const std::string& recorded) { return recorded == server ? client_.get() : nullptr; }, spool_dir_);
  if (report.completed > 0) {
    std::fprintf(out, "petal: delivered %zu earlier spooled runs (%zu operations; %zu left RUNNING by a killed petal, now KILLED)\n",
                 report.completed, report.delivered_operations, report.killed);
  }
  for (const auto& error : report.errors) std::fprintf(out, "petal: warning: earlier spool not delivered: %s\n", error.c_str());
}

}  // namespace petal
