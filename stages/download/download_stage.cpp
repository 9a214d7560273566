#include "stages/download/download_stage.h"

#include <algorithm>
#include <fstream>
#include <map>
#include <set>

#include "pipeline/cache/digest_cache.h"
#include "pipeline/util/error.h"
#include "pipeline/util/fs.h"

namespace petal {

using nlohmann::json;
namespace fs = std::filesystem;

namespace {

const std::vector<std::string> kDefaultExtensions = {".jpg", ".jpeg", ".png", ".bmp", ".webp"};

std::string lower(std::string text) {
  std::transform(text.begin(), text.end(), text.begin(), [](unsigned char c) { return std::tolower(c); });
  return text;
}

void run_local(StageContext& ctx) {
  const fs::path root = ctx.params.at("path").get<std::string>();
  std::set<std::string> extensions;
  for (const auto& e : ctx.params.at("extensions")) extensions.insert(lower(e.get<std::string>()));

  // The stage re-hashes (no stat cache): it only runs when the folder's digest changed anyway.
  DigestCache no_store(ctx.output_dir / ".unused");
  const TreeDigest tree = no_store.digest(root);

  std::map<std::string, std::size_t> per_class;
  std::size_t skipped_other = 0, skipped_unlabelled = 0;
  std::ofstream files(ctx.output_dir / "files.tsv");
  files << "path\tlabel\tsize\tsha256\n";
  for (const auto& f : tree.files) {
    if (ctx.cancelled && ctx.cancelled()) throw StageCancelled();
    const fs::path relative(f.relative);
    if (!extensions.count(lower(relative.extension().string()))) {
      ++skipped_other;
      continue;
    }
    auto first = relative.begin();
    if (std::distance(relative.begin(), relative.end()) < 2) {
      ++skipped_unlabelled;
      continue;
    }
    const std::string label = first->string();
    if (f.relative.find_first_of("\t\n") != std::string::npos) {
      throw PetalError("file name with a tab or newline cannot be listed: " + f.relative);
    }
    files << f.relative << '\t' << label << '\t' << f.size << '\t' << f.sha256 << '\n';
    ++per_class[label];
  }
  files.close();
  if (per_class.empty()) {
    throw PetalError("download.path " + root.string() +
                     " holds no images in class folders; expected <class>/<image> with extensions such as .jpg");
  }
  std::ofstream classes(ctx.output_dir / "classes.txt");
  json counts = json::object();
  std::size_t images = 0;
  for (const auto& [label, count] : per_class) {
    classes << label << '\n';
    counts[label] = count;
    images += count;
  }
  const json dataset = {{"source", "local"}, {"root", root.string()}, {"digest", tree.digest},
                        {"images", images},  {"classes", counts},     {"bytes", tree.total_size}};
  std::ofstream(ctx.output_dir / "dataset.json") << dataset.dump(2) << "\n";
  ctx.report.metric("images", static_cast<double>(images));
  ctx.report.metric("classes", static_cast<double>(per_class.size()));
  ctx.report.note(std::to_string(images) + " images in " + std::to_string(per_class.size()) + " classes from " +
                  root.string());
  if (skipped_other || skipped_unlabelled) {
    ctx.report.note("ignored " + std::to_string(skipped_other) + " non-image files and " +
                    std::to_string(skipped_unlabelled) + " images outside class folders");
  }
}

}  // namespace

StageKind make_download_stage() {
  StageKind kind;
  kind.name = "download";
  kind.version = "download/1";
  kind.summary = "bring a dataset into the pipeline (a local image folder)";
  kind.params = {
      ParamSpec::choice("source", {"local"}, "local", "where the images come from"),
      ParamSpec::path("path", std::nullopt, "the folder holding <class>/<image> files"),
      ParamSpec::strings("extensions", kDefaultExtensions, "file extensions counted as images"),
  };
  kind.external_inputs = [](const json& params) {
    return std::vector<ExternalInput>{{"path", params.at("path").get<std::string>()}};
  };
  kind.run = run_local;
  return kind;
}

}  // namespace petal
