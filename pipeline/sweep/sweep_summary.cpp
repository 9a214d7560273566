#include "pipeline/sweep/sweep_summary.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>

namespace petal {

using nlohmann::json;

std::string find_objective_key(const std::string& metric, const std::vector<std::string>& stage_order,
                               const json& metrics) {
  if (metrics.contains(metric) && metrics.at(metric).is_number()) return metric;
  for (auto it = stage_order.rbegin(); it != stage_order.rend(); ++it) {
    const std::string key = *it + "." + metric;
    if (metrics.contains(key) && metrics.at(key).is_number()) return key;
  }
  return "";
}

namespace {

std::string bare_name(const std::string& key) {
  const auto dot = key.find('.');
  return dot == std::string::npos ? key : key.substr(dot + 1);
}

std::string stage_of(const std::string& key) {
  const auto dot = key.find('.');
  return dot == std::string::npos ? "" : key.substr(0, dot);
}

std::string number_text(double value, int decimals) {
  char text[64];
  std::snprintf(text, sizeof text, "%.*f", decimals, value);
  return text;
}

std::string value_text(const json& value) {
  if (value.is_null()) return "";
  if (value.is_string()) return value.get<std::string>();
  return value.dump();
}

bool has_objective(const TrialRecord& t) { return t.status == TrialStatus::Finished && t.objective.is_number(); }

// The objective's key as most trials resolved it (trials of one sweep normally agree).
std::string common_objective_key(const SweepState& state, const SweepDefinition& sweep) {
  std::map<std::string, int> votes;
  for (const auto& t : state.trials) {
    if (!t.objective_key.empty()) ++votes[t.objective_key];
  }
  std::string best = sweep.objective_metric;
  int most = 0;
  for (const auto& [key, n] : votes) {
    if (n > most) best = key, most = n;
  }
  return best;
}

}  // namespace

std::string to_csv(const ComparisonTable& table) {
  const auto field = [](const std::string& text) {
    if (text.find_first_of(",\"\n") == std::string::npos) return text;
    std::string quoted = "\"";
    for (char c : text) quoted += c == '"' ? std::string("\"\"") : std::string(1, c);
    return quoted + "\"";
  };
  std::string out;
  const auto line = [&](const std::vector<std::string>& cells) {
    for (std::size_t i = 0; i < cells.size(); ++i) out += (i ? "," : "") + field(cells[i]);
    out += "\n";
  };
  line(table.header);
  for (const auto& row : table.rows) line(row);
  return out;
}

std::string to_markdown(const ComparisonTable& table) {
  const auto cell = [](std::string text) {
    for (std::size_t at = 0; (at = text.find('|', at)) != std::string::npos; at += 2) text.replace(at, 1, "\\|");
    return text;
  };
  std::string out = "|";
  for (const auto& h : table.header) out += " " + cell(h) + " |";
  out += "\n|";
  for (std::size_t i = 0; i < table.header.size(); ++i) out += " --- |";
  out += "\n";
  for (const auto& row : table.rows) {
    out += "|";
    for (const auto& c : row) out += " " + cell(c) + " |";
    out += "\n";
  }
  return out;
}

SweepSummary summarize(const SweepState& state, const SweepDefinition& sweep, const std::vector<std::string>& swept) {
  SweepSummary summary;
  std::vector<std::size_t> scored, rest;
  for (std::size_t i = 0; i < state.trials.size(); ++i) (has_objective(state.trials[i]) ? scored : rest).push_back(i);
  std::stable_sort(scored.begin(), scored.end(), [&](std::size_t a, std::size_t b) {
    const double va = state.trials[a].objective.get<double>(), vb = state.trials[b].objective.get<double>();
    return sweep.objective_maximize ? va > vb : va < vb;
  });
  summary.ranking = scored;
  summary.ranking.insert(summary.ranking.end(), rest.begin(), rest.end());
  if (!scored.empty()) summary.best = static_cast<int>(scored.front());

  // Beside the objective: the test accuracy and macro-F1 of the objective's stage, when it has them.
  const std::string objective_key = common_objective_key(state, sweep);
  std::vector<std::string> extra;
  for (const std::string name : {"test_accuracy", "test_f1"}) {
    const std::string key = stage_of(objective_key).empty() ? name : stage_of(objective_key) + "." + name;
    if (key == objective_key) continue;
    for (const auto& t : state.trials) {
      if (t.metrics.contains(key)) {
        extra.push_back(key);
        break;
      }
    }
  }
  auto& header = summary.table.header;
  header = {"rank", "trial"};
  header.insert(header.end(), swept.begin(), swept.end());
  header.push_back("status");
  header.push_back(objective_key + (sweep.objective_maximize ? " (max)" : " (min)"));
  header.insert(header.end(), extra.begin(), extra.end());
  header.push_back("seconds");
  header.push_back("mlflow_run");
  for (std::size_t r = 0; r < summary.ranking.size(); ++r) {
    const TrialRecord& t = state.trials[summary.ranking[r]];
    std::vector<std::string> row = {has_objective(t) ? std::to_string(r + 1) : "-", t.id};
    for (const auto& param : swept) row.push_back(t.values.contains(param) ? value_text(t.values.at(param)) : "");
    row.push_back(to_string(t.status));
    row.push_back(t.objective.is_number() ? number_text(t.objective.get<double>(), 4) : "");
    for (const auto& key : extra) {
      row.push_back(t.metrics.contains(key) && t.metrics.at(key).is_number() ? number_text(t.metrics.at(key).get<double>(), 4) : "");
    }
    row.push_back(t.attempts > 0 ? number_text(t.seconds, 1) : "");
    row.push_back(t.mlflow_run_id);
    summary.table.rows.push_back(std::move(row));
  }
  return summary;
}

json SweepSummary::to_json(const SweepState& state) const {
  json trials = json::array();
  for (std::size_t r = 0; r < ranking.size(); ++r) {
    const TrialRecord& t = state.trials[ranking[r]];
    trials.push_back({{"id", t.id},           {"label", t.label},
                      {"values", t.values},   {"status", to_string(t.status)},
                      {"objective_key", t.objective_key}, {"objective", t.objective},
                      {"metrics", t.metrics}, {"seconds", t.seconds},
                      {"mlflow_run_id", t.mlflow_run_id}, {"petal_run_id", t.petal_run_id},
                      {"error", t.error}});
  }
  json out = {{"sweep", state.name}, {"sweep_id", state.sweep_id}, {"parent_mlflow_run_id", state.parent_mlflow_run_id},
              {"trials", trials}};
  out["best"] = best >= 0 ? json(state.trials[static_cast<std::size_t>(best)].id) : json(nullptr);
  return out;
}

json chart_request(const SweepState& state, const SweepDefinition& sweep, const SweepSummary& summary) {
  const std::string objective_key = common_objective_key(state, sweep);
  // The curve's metric: the objective's own per-epoch series when stages report one.
  std::string curve = bare_name(objective_key);
  const auto has_series = [&](const std::string& name) {
    for (const auto& t : state.trials) {
      for (const auto& c : t.curves) {
        if (c.value("name", "") == name) return true;
      }
    }
    return false;
  };
  if (!has_series(curve)) curve = has_series("val_accuracy") ? "val_accuracy" : "val_loss";

  json bars = json::array();
  for (std::size_t index : summary.ranking) {
    const TrialRecord& t = state.trials[index];
    if (!t.objective.is_number()) continue;
    bars.push_back({{"label", t.id + " " + t.label}, {"value", t.objective}});
  }
  json series = json::array();
  for (const auto& t : state.trials) {
    json x = json::array(), y = json::array();
    double offset = 0;  // a later stage's epochs continue after an earlier one's (train, then finetune)
    for (const auto& c : t.curves) {
      double last = 0;
      if (c.value("name", "") != curve) continue;
      for (const auto& point : c.value("points", json::array())) {
        x.push_back(offset + point[0].get<double>());
        y.push_back(point[1]);
        last = std::max(last, point[0].get<double>());
      }
      offset += last;
    }
    if (!x.empty()) series.push_back({{"name", t.id + " " + t.label}, {"x", x}, {"y", y}});
  }
  return {{"title", "sweep " + state.name},
          {"objective", objective_key},
          {"maximize", sweep.objective_maximize},
          {"bars", bars},
          {"curve_metric", curve},
          {"curves", series}};
}

}  // namespace petal
