#include "stages/split/split_stage.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <fstream>
#include <map>
#include <sstream>

#include "pipeline/util/error.h"

namespace petal {

using nlohmann::json;
namespace fs = std::filesystem;

namespace {

// SplitMix64: a tiny generator whose sequence is fixed by its definition, so a seed means the
// same split on every compiler and platform (std::shuffle and distributions give no such promise).
class SplitMix64 {
 public:
  explicit SplitMix64(std::uint64_t seed) : state_(seed) {}
  std::uint64_t next() {
    std::uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  std::uint64_t below(std::uint64_t bound) {  // unbiased, by rejection
    const std::uint64_t limit = UINT64_MAX - UINT64_MAX % bound;
    std::uint64_t value;
    do value = next(); while (value >= limit);
    return value % bound;
  }

 private:
  std::uint64_t state_;
};

template <typename T>
void shuffle(std::vector<T>& items, SplitMix64& random) {
  for (std::size_t i = items.size(); i > 1; --i) std::swap(items[i - 1], items[random.below(i)]);
}

struct Item {
  std::string path;
  std::string label;
};

std::vector<Item> read_files(const fs::path& file) {
  std::ifstream in(file);
  if (!in) throw PetalError("split: cannot read " + file.string() + " from the download stage");
  std::vector<Item> items;
  std::string line;
  std::getline(in, line);  // header
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    Item item;
    std::getline(fields, item.path, '\t');
    std::getline(fields, item.label, '\t');
    if (!item.path.empty()) items.push_back(std::move(item));
  }
  return items;
}

void run_split(StageContext& ctx) {
  if (ctx.inputs.size() != 1) throw PetalError("split needs exactly one input stage (the download stage)");
  const fs::path input = ctx.inputs.begin()->second;
  const std::vector<Item> items = read_files(input / "files.tsv");
  const std::vector<double> ratios = ctx.params.at("ratios").get<std::vector<double>>();
  const bool stratify = ctx.params.at("stratify").get<bool>();
  SplitMix64 random(static_cast<std::uint64_t>(ctx.params.at("seed").get<long long>()));

  std::map<std::string, std::vector<const Item*>> groups;  // sorted: stable across runs
  for (const auto& item : items) groups[stratify ? item.label : std::string()].push_back(&item);
  static const char* kNames[] = {"train", "val", "test"};
  std::map<std::string, std::string> assignment;
  json counts = json::object();
  for (auto& [group, members] : groups) {
    std::sort(members.begin(), members.end(), [](const Item* a, const Item* b) { return a->path < b->path; });
    shuffle(members, random);
    const std::size_t n = members.size();
    const std::size_t n_val = static_cast<std::size_t>(std::llround(n * ratios[1]));
    const std::size_t n_test = std::min(n - n_val, static_cast<std::size_t>(std::llround(n * ratios[2])));
    for (std::size_t i = 0; i < n; ++i) {
      const int which = i < n_val ? 1 : i < n_val + n_test ? 2 : 0;
      assignment[members[i]->path] = kNames[which];
    }
  }
  std::ofstream out(ctx.output_dir / "split.tsv");
  out << "path\tlabel\tsplit\n";
  std::map<std::string, std::map<std::string, int>> table;
  for (const auto& item : items) {
    const std::string& split = assignment[item.path];
    out << item.path << '\t' << item.label << '\t' << split << '\n';
    ++table[item.label][split];
  }
  out.close();
  std::ofstream classes(ctx.output_dir / "classes.txt");
  std::map<std::string, int> totals;
  for (const auto& [label, per_split] : table) {
    classes << label << '\n';
    counts[label] = per_split;
    for (const auto& [split, count] : per_split) totals[split] += count;
  }
  std::ofstream(ctx.output_dir / "counts.json") << json{{"per_class", counts}, {"total", totals}}.dump(2) << "\n";
  ctx.report.artifact("counts.json");
  for (const char* split : kNames) ctx.report.metric(std::string(split) + "_images", totals[split]);
  ctx.report.note("train " + std::to_string(totals["train"]) + ", val " + std::to_string(totals["val"]) + ", test " +
                  std::to_string(totals["test"]) + " images" + (stratify ? " (stratified by class)" : ""));
}

}  // namespace

StageKind make_split_stage() {
  StageKind kind;
  kind.name = "split";
  kind.version = "split/1";
  kind.summary = "reproducible train/val/test split, stratified by class";
  kind.default_needs = {"download"};
  kind.params = {
      ParamSpec::reals("ratios", std::vector<double>{0.8, 0.1, 0.1}, "train, val and test fractions")
          .at_least(0)
          .at_most(1)
          .exactly(3),
      ParamSpec::integer("seed", 42, "seed of the shuffle").at_least(0),
      ParamSpec::boolean("stratify", true, "keep each class's proportions in every split"),
  };
  kind.check = [](const json& params) {
    std::vector<std::pair<std::string, std::string>> problems;
    const auto ratios = params.at("ratios").get<std::vector<double>>();
    const double sum = ratios[0] + ratios[1] + ratios[2];
    if (std::fabs(sum - 1.0) > 1e-6) {
      std::ostringstream text;
      text << "must sum to 1 (got " << sum << ")";
      problems.emplace_back("ratios", text.str());
    }
    if (ratios[0] <= 0) problems.emplace_back("ratios", "must give the train split a fraction > 0");
    return problems;
  };
  kind.run = run_split;
  return kind;
}

}  // namespace petal
