#include "tracking/mlflow_client.h"

#include <cmath>

#include "tracking/mlflow_limits.h"

namespace petal::mlflow {

using nlohmann::json;

namespace {
constexpr const char* kApi = "/api/2.0/mlflow/";

std::string plain_text_excerpt(const std::string& body) {
  std::string text;
  bool in_tag = false;
  for (char c : body) {
    if (c == '<') in_tag = true;
    else if (c == '>') in_tag = false;
    else if (!in_tag) text += (c == '\n' || c == '\r' || c == '\t') ? ' ' : c;
  }
  std::string squeezed;
  for (char c : text) {
    if (c == ' ' && !squeezed.empty() && squeezed.back() == ' ') continue;
    squeezed += c;
  }
  if (squeezed.size() > 200) squeezed = squeezed.substr(0, 200) + "...";
  return squeezed;
}

std::string str(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return {};
  return it->is_string() ? it->get<std::string>() : it->dump();
}

std::int64_t int64(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end()) return 0;
  if (it->is_number()) return it->get<std::int64_t>();
  if (it->is_string()) return std::stoll(it->get<std::string>());
  return 0;
}

double double_from_json(const json& j) {
  if (j.is_number()) return j.get<double>();
  if (j.is_string()) {
    const std::string s = j.get<std::string>();
    if (s == "NaN") return std::nan("");
    if (s == "Infinity") return INFINITY;
    if (s == "-Infinity") return -INFINITY;
    return std::stod(s);
  }
  return 0;
}

}  // namespace

MlflowError::MlflowError(long status, std::string error_code, const std::string& message)
    : PetalError(message, {}, kExitEnvironment), status_(status), error_code_(std::move(error_code)) {}

bool server_away(const std::exception& e) {
  if (dynamic_cast<const HttpUnreachable*>(&e)) return true;
  if (const auto* m = dynamic_cast<const MlflowError*>(&e)) return m->status() == 429 || m->status() >= 500;
  return false;
}

json double_to_json(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "Infinity" : "-Infinity";
  return value;
}

json to_json(const Metric& m) {
  return json{{"key", m.key}, {"value", double_to_json(m.value)}, {"timestamp", m.timestamp_ms}, {"step", m.step}};
}

Run run_from_json(const json& j) {
  Run run;
  const json& info = j.at("info");
  run.info.run_id = str(info, "run_id");
  run.info.experiment_id = str(info, "experiment_id");
  run.info.run_name = str(info, "run_name");
  run.info.status = str(info, "status");
  run.info.artifact_uri = str(info, "artifact_uri");
  run.info.lifecycle_stage = str(info, "lifecycle_stage");
  run.info.start_time = int64(info, "start_time");
  run.info.end_time = int64(info, "end_time");
  if (j.contains("data")) {
    const json& data = j["data"];
    for (const auto& m : data.value("metrics", json::array())) run.metrics[str(m, "key")] = double_from_json(m.at("value"));
    for (const auto& p : data.value("params", json::array())) run.params[str(p, "key")] = str(p, "value");
    for (const auto& t : data.value("tags", json::array())) run.tags[str(t, "key")] = str(t, "value");
  }
  return run;
}

Client::Client(HttpSettings settings) : http_(std::make_unique<HttpClient>(std::move(settings))) {}
Client::Client(const std::string& tracking_uri) : Client(HttpSettings::from_environment(tracking_uri)) {}

json Client::parse_answer(const std::string& what, const HttpResponse& response) {
  json body;
  bool parsed = true;
  try {
    body = response.body.empty() ? json::object() : json::parse(response.body);
  } catch (const json::parse_error&) {
    parsed = false;
  }
  const std::string where = redact_url(http_->settings().base_url);
  if (response.status >= 200 && response.status < 300) {
    // A proxy's login page or a web server that is not MLflow answers 200 too: only a JSON object
    // is an MLflow answer.
    if (!parsed || !body.is_object()) {
      throw MlflowError(response.status, "BAD_RESPONSE",
                        "MLflow server " + where + " answered " + what + " with malformed JSON (HTTP " +
                            std::to_string(response.status) + "): " + plain_text_excerpt(response.body));
    }
    return body;
  }
  std::string hint;
  if (response.status == 401) hint = "; set MLFLOW_TRACKING_USERNAME/MLFLOW_TRACKING_PASSWORD or MLFLOW_TRACKING_TOKEN";
  if (response.status == 403) hint = "; the credentials lack permission for this";
  if (parsed && body.is_object() && body.contains("error_code")) {
    throw MlflowError(response.status, str(body, "error_code"),
                      "MLflow server " + where + " refused " + what + " (HTTP " + std::to_string(response.status) +
                          " " + str(body, "error_code") + "): " + str(body, "message") + hint);
  }
  throw MlflowError(response.status, "HTTP_" + std::to_string(response.status),
                    "MLflow server " + where + " answered " + what + " with HTTP " + std::to_string(response.status) +
                        (response.body.empty() ? "" : ": " + plain_text_excerpt(response.body)) + hint);
}

json Client::call(const std::string& method, const std::string& endpoint, const json& body) {
  const HttpResponse response = http_->send_json(method, kApi + endpoint, body.dump());
  return parse_answer(method + " " + endpoint, response);
}

json Client::get(const std::string& endpoint, const std::map<std::string, std::string>& query) {
  const HttpResponse response = http_->get(kApi + endpoint, query);
  return parse_answer("GET " + endpoint, response);
}

std::optional<ExperimentInfo> Client::get_experiment_by_name(const std::string& name) {
  json answer;
  try {
    answer = get("experiments/get-by-name", {{"experiment_name", name}});
  } catch (const MlflowError& e) {
    if (e.error_code() == "RESOURCE_DOES_NOT_EXIST") return std::nullopt;
    throw;
  }
  const json& e = answer.at("experiment");
  return ExperimentInfo{str(e, "experiment_id"), str(e, "name"), str(e, "artifact_location"),
                        str(e, "lifecycle_stage")};
}

std::string Client::create_experiment(const std::string& name, const std::vector<Tag>& tags) {
  json body = {{"name", name}};
  if (!tags.empty()) {
    body["tags"] = json::array();
    for (const auto& t : tags) body["tags"].push_back({{"key", t.key}, {"value", t.value}});
  }
  return str(call("POST", "experiments/create", body), "experiment_id");
}

void Client::restore_experiment(const std::string& experiment_id) {
  call("POST", "experiments/restore", {{"experiment_id", experiment_id}});
}

std::string Client::ensure_experiment(const std::string& name) {
  if (auto found = get_experiment_by_name(name)) {
    if (found->lifecycle_stage == "deleted") restore_experiment(found->experiment_id);
    return found->experiment_id;
  }
  try {
    return create_experiment(name);
  } catch (const MlflowError& e) {
    if (e.error_code() != "RESOURCE_ALREADY_EXISTS") throw;
    return get_experiment_by_name(name).value().experiment_id;  // created concurrently
  }
}

RunInfo Client::create_run(const std::string& experiment_id, const std::string& run_name, std::int64_t start_time_ms,
                           const std::vector<Tag>& tags) {
  validate({}, {}, tags);
  json body = {{"experiment_id", experiment_id}, {"start_time", start_time_ms}};
  if (!run_name.empty()) body["run_name"] = run_name;
  body["tags"] = json::array();
  for (const auto& t : tags) body["tags"].push_back({{"key", t.key}, {"value", t.value}});
  return run_from_json(call("POST", "runs/create", body).at("run")).info;
}

void Client::update_run(const std::string& run_id, const std::string& status, std::int64_t end_time_ms) {
  json body = {{"run_id", run_id}, {"status", status}};
  if (end_time_ms > 0) body["end_time"] = end_time_ms;
  call("POST", "runs/update", body);
}

Run Client::get_run(const std::string& run_id) { return run_from_json(get("runs/get", {{"run_id", run_id}}).at("run")); }

void Client::log_batch(const std::string& run_id, const std::vector<Metric>& metrics, const std::vector<Param>& params,
                       const std::vector<Tag>& tags) {
  validate(metrics, params, tags);
  for (const Batch& batch : split_batches(metrics, params, tags)) {
    json body = {{"run_id", run_id}, {"metrics", json::array()}, {"params", json::array()}, {"tags", json::array()}};
    for (const auto& m : batch.metrics) body["metrics"].push_back(to_json(m));
    for (const auto& p : batch.params) body["params"].push_back({{"key", p.key}, {"value", p.value}});
    for (const auto& t : batch.tags) body["tags"].push_back({{"key", t.key}, {"value", t.value}});
    call("POST", "runs/log-batch", body);
  }
}

void Client::set_tag(const std::string& run_id, const std::string& key, const std::string& value) {
  validate({}, {}, {Tag{key, value}});
  call("POST", "runs/set-tag", {{"run_id", run_id}, {"key", key}, {"value", value}});
}

void Client::log_inputs(const std::string& run_id, const std::vector<Dataset>& datasets) {
  json inputs = json::array();
  for (const auto& d : datasets) {
    if (d.digest.size() > 36) throw PetalError("MLflow dataset digest must be at most 36 characters: " + d.digest);
    json dataset = {{"name", d.name}, {"digest", d.digest}, {"source_type", d.source_type}, {"source", d.source}};
    if (!d.schema.empty()) dataset["schema"] = d.schema;
    if (!d.profile.empty()) dataset["profile"] = d.profile;
    json tags = json::array();
    for (const auto& t : d.tags) tags.push_back({{"key", t.key}, {"value", t.value}});
    inputs.push_back({{"tags", tags}, {"dataset", dataset}});
  }
  call("POST", "runs/log-inputs", {{"run_id", run_id}, {"datasets", inputs}});
}

Client::SearchPage Client::search_runs(const std::vector<std::string>& experiment_ids, const std::string& filter,
                                       const std::vector<std::string>& order_by, int max_results,
                                       const std::string& page_token) {
  json body = {{"experiment_ids", experiment_ids}, {"max_results", max_results}, {"run_view_type", "ACTIVE_ONLY"}};
  if (!filter.empty()) body["filter"] = filter;
  if (!order_by.empty()) body["order_by"] = order_by;
  if (!page_token.empty()) body["page_token"] = page_token;
  const json answer = call("POST", "runs/search", body);
  SearchPage page;
  for (const auto& r : answer.value("runs", json::array())) page.runs.push_back(run_from_json(r));
  page.next_page_token = str(answer, "next_page_token");
  return page;
}

std::vector<Run> Client::search_all_runs(const std::vector<std::string>& experiment_ids, const std::string& filter) {
  std::vector<Run> runs;
  std::string token;
  do {
    SearchPage page = search_runs(experiment_ids, filter, {}, 1000, token);
    for (auto& r : page.runs) runs.push_back(std::move(r));
    token = page.next_page_token;
  } while (!token.empty());
  return runs;
}

std::vector<Metric> Client::metric_history(const std::string& run_id, const std::string& key) {
  std::vector<Metric> history;
  std::string token;
  do {
    std::map<std::string, std::string> query = {{"run_id", run_id}, {"metric_key", key}, {"max_results", "25000"}};
    if (!token.empty()) query["page_token"] = token;
    const json answer = get("metrics/get-history", query);
    for (const auto& m : answer.value("metrics", json::array())) {
      history.push_back(Metric{str(m, "key"), double_from_json(m.at("value")), int64(m, "timestamp"), int64(m, "step")});
    }
    token = str(answer, "next_page_token");
  } while (!token.empty());
  return history;
}

}  // namespace petal::mlflow
