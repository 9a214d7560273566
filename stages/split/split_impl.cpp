#include "stages/split/split_impl.h"

#include <algorithm>
#include <functional>
#include <atomic>
#include <cstdio>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include "pipeline/util/error.h"
#include "pipeline/util/sha256.h"
#include "stages/augment/image_check.h"
#include "stages/split/oxford_labels.h"
#include "stages/split/split_assign.h"
#include "stages/split/split_charts.h"

namespace petal {

using nlohmann::json;
namespace fs = std::filesystem;

namespace {

struct Source {
  fs::path root;        // absolute folder the listed paths are relative to
  std::string layout;   // "imagefolder" or "flowers102"
  fs::path dir;         // the download stage's output
};

Source read_source(const StageContext& ctx) {
  if (ctx.inputs.size() != 1) throw PetalError("split needs exactly one input stage (a download stage)");
  Source source;
  source.dir = ctx.inputs.begin()->second;
  std::ifstream in(source.dir / "dataset.json");
  if (!in) throw PetalError("split: its input has no dataset.json; split reads the output of a download stage");
  const json dataset = json::parse(in);
  const fs::path root = dataset.at("root").get<std::string>();
  source.root = root.is_absolute() ? root : source.dir / root;
  source.layout = dataset.value("layout", "imagefolder");
  return source;
}

std::vector<SplitItem> read_listing(const fs::path& files_tsv) {
  std::ifstream in(files_tsv);
  if (!in) throw PetalError("split: cannot read " + files_tsv.string());
  std::vector<SplitItem> items;
  std::string line;
  std::getline(in, line);  // header: path label size sha256
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    SplitItem item;
    std::string size;
    std::getline(fields, item.path, '\t');
    std::getline(fields, item.label, '\t');
    std::getline(fields, size, '\t');
    std::getline(fields, item.sha256, '\t');
    if (!item.path.empty()) items.push_back(std::move(item));
  }
  return items;
}

std::string resolve_method(const std::string& asked, const Source& source, const std::vector<SplitItem>& items) {
  if (asked != "auto") return asked;
  if (source.layout == "flowers102") return "oxford102";
  static const std::set<std::string> folders = {"train", "valid", "val", "test"};
  const bool by_folders = !items.empty() && std::all_of(items.begin(), items.end(), [](const SplitItem& item) {
    return folders.count(item.path.substr(0, item.path.find('/'))) > 0;
  });
  return by_folders ? "folders" : "stratified";
}

void apply_oxford(std::vector<SplitItem>& items, const Source& source) {
  // A flowers102 download keeps the .mat files in its output; a local copy keeps them in its root.
  const fs::path meta = fs::exists(source.dir / "imagelabels.mat") ? source.dir : source.root;
  const OxfordSplit oxford = read_oxford_split(meta / "imagelabels.mat", meta / "setid.mat");
  for (auto& item : items) {
    int number = 0;
    if (std::sscanf(fs::path(item.path).filename().c_str(), "image_%d.jpg", &number) != 1) {
      item.excluded = "not an Oxford-102 image name (image_NNNNN.jpg)";
      continue;
    }
    const auto label = oxford.label_of.find(number);
    const auto split = oxford.split_of.find(number);
    if (label == oxford.label_of.end() || split == oxford.split_of.end()) {
      item.excluded = "image " + std::to_string(number) + " is not in imagelabels.mat/setid.mat";
      continue;
    }
    char name[16];
    std::snprintf(name, sizeof name, "%03d", label->second);  // zero-padded: classes sort by number
    item.label = name;
    item.split = split->second;
  }
}

void apply_folders(std::vector<SplitItem>& items) {
  for (auto& item : items) {
    const fs::path path(item.path);
    auto part = path.begin();
    const std::string top = part->string();
    if (std::distance(path.begin(), path.end()) < 3) {
      item.excluded = "not in <split>/<class>/ folders";
      continue;
    }
    item.split = top == "valid" ? "val" : top;
    item.label = (++part)->string();
  }
}


void check_all(std::vector<SplitItem>& items, const fs::path& root, int threads, const std::function<bool()>& cancelled) {
  std::atomic<std::size_t> next{0};
  std::vector<std::thread> pool;
  for (int t = 0; t < std::max(1, threads); ++t) {
    pool.emplace_back([&] {
      for (std::size_t i; (i = next.fetch_add(1)) < items.size();) {
        if (cancelled && cancelled()) return;
        if (!items[i].excluded.empty()) continue;
        const std::string problem = check_image(root / items[i].path);
        if (!problem.empty()) items[i].excluded = problem;
      }
    });
  }
  for (auto& t : pool) t.join();
  if (cancelled && cancelled()) throw StageCancelled();
}

}  // namespace

void run_split_stage(StageContext& ctx) {
  const Source source = read_source(ctx);
  std::vector<SplitItem> items = read_listing(source.dir / "files.tsv");
  const std::string method = resolve_method(ctx.params.at("method").get<std::string>(), source, items);
  if (method == "oxford102") apply_oxford(items, source);
  else if (method == "folders") apply_folders(items);
  for (auto& item : items) {
    if (item.excluded.empty() && item.label.empty()) item.excluded = "no label (not in a class folder)";
  }
  if (ctx.params.at("check_images").get<bool>()) check_all(items, source.root, ctx.threads, ctx.cancelled);
  const DuplicateReport duplicates = resolve_duplicates(items, ctx.params.at("conflicts").get<std::string>());
  if (method == "stratified") {
    assign_stratified(items, ctx.params.at("ratios").get<std::vector<double>>(),
                      static_cast<std::uint64_t>(ctx.params.at("seed").get<long long>()),
                      ctx.params.at("stratify").get<bool>());
  }

  std::map<std::string, std::map<std::string, int>> counts;
  std::map<std::string, std::vector<fs::path>> samples;
  std::map<std::string, int> totals;
  json excluded = json::array();
  std::string listing = "path\tlabel\tsplit\tsha256\n";
  const int per_class = static_cast<int>(ctx.params.at("samples_per_class").get<long long>());
  for (const auto& item : items) {
    if (!item.excluded.empty()) {
      excluded.push_back({{"path", item.path}, {"label", item.label}, {"reason", item.excluded}});
      continue;
    }
    listing += item.path + "\t" + item.label + "\t" + item.split + "\t" + item.sha256 + "\n";
    ++counts[item.label][item.split];
    ++totals[item.split];
    if (static_cast<int>(samples[item.label].size()) < per_class) samples[item.label].push_back(source.root / item.path);
  }
  if (counts.empty()) throw PetalError("split: no usable images remain (" + std::to_string(excluded.size()) + " excluded)");
  std::ofstream(ctx.output_dir / "split.tsv") << listing;
  std::ofstream classes(ctx.output_dir / "classes.txt");
  for (const auto& [label, per_split] : counts) classes << label << '\n';
  classes.close();
  std::ofstream(ctx.output_dir / "source.json") << json{{"root", source.root.string()}}.dump(2) << "\n";

  json per_class_json = json::object();
  for (const auto& [label, per_split] : counts) per_class_json[label] = per_split;
  const json quality = {{"method", method},
                        {"images", items.size()},
                        {"kept", items.size() - excluded.size()},
                        {"per_class", per_class_json},
                        {"per_split", totals},
                        {"excluded", excluded},
                        {"duplicate_groups", duplicates.groups},
                        {"label_conflicts", duplicates.conflicts},
                        {"duplicates_across_given_splits", duplicates.cross_split}};
  std::ofstream(ctx.output_dir / "quality.json") << quality.dump(2) << "\n";
  std::ofstream(ctx.output_dir / "counts.json") << json{{"per_class", per_class_json}, {"total", totals}}.dump(2) << "\n";
  const std::string digest = sha256_hex(listing);
  std::ofstream(ctx.output_dir / "dataset.json")
      << json{{"source", "split"}, {"from", source.root.string()}, {"digest", digest}, {"images", items.size() - excluded.size()},
              {"classes", per_class_json}}.dump(2)
      << "\n";
  write_class_distribution(counts, ctx.output_dir / "class_distribution.png");
  write_sample_grid(samples, per_class, ctx.output_dir / "samples.png");

  for (const char* artifact : {"quality.json", "class_distribution.png", "samples.png", "split.tsv"}) ctx.report.artifact(artifact);
  for (const char* split : {"train", "val", "test"}) ctx.report.metric(std::string(split) + "_images", totals[split]);
  ctx.report.metric("excluded_images", static_cast<double>(excluded.size()));
  ctx.report.metric("duplicate_groups", static_cast<double>(duplicates.groups.size()));
  ctx.report.metric("label_conflicts", static_cast<double>(duplicates.conflicts.size()));
  ctx.report.note(method + ": train " + std::to_string(totals["train"]) + ", val " + std::to_string(totals["val"]) +
                  ", test " + std::to_string(totals["test"]) + " images in " + std::to_string(counts.size()) + " classes");
  ctx.report.note("excluded " + std::to_string(excluded.size()) + " images; " + std::to_string(duplicates.groups.size()) +
                  " groups of identical images; " + std::to_string(duplicates.conflicts.size()) +
                  " identical images under different labels (see quality.json)");
}

}  // namespace petal
