#include "stages/download/download_stage.h"

#include <algorithm>
#include <fstream>
#include <map>
#include <set>

#include "pipeline/cache/digest_cache.h"
#include "pipeline/util/error.h"
#include "pipeline/util/fs.h"
#include "stages/download/archive_extract.h"
#include "stages/download/http_fetch.h"

namespace petal {

using nlohmann::json;
namespace fs = std::filesystem;

namespace {

const std::vector<std::string> kDefaultExtensions = {".jpg", ".jpeg", ".png", ".bmp", ".webp"};

std::string lower(std::string text) {
  std::transform(text.begin(), text.end(), text.begin(), [](unsigned char c) { return std::tolower(c); });
  return text;
}

bool local_folder_exists(const json& params) {
  const std::string path = params.at("path").get<std::string>();
  std::error_code ec;
  return !path.empty() && fs::is_directory(path, ec);
}

// "local" or "url": what `auto` resolves to for these parameters.
std::string effective_source(const json& params) {
  const std::string source = params.at("source").get<std::string>();
  if (source != "auto") return source;
  return local_folder_exists(params) ? "local" : "url";
}

// Lists <class>/<image> files below `root` into the stage's output. `root_text` is how
// dataset.json names the root: absolute for a local folder, relative to this output for a download.
void write_listing(StageContext& ctx, const fs::path& root, const std::string& root_text, const json& origin) {
  std::set<std::string> extensions;
  for (const auto& e : ctx.params.at("extensions")) extensions.insert(lower(e.get<std::string>()));

  DigestCache no_store(ctx.output_dir / ".unused");  // the stage runs only when content changed
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
    if (std::distance(relative.begin(), relative.end()) < 2) {
      ++skipped_unlabelled;
      continue;
    }
    if (f.relative.find_first_of("\t\n") != std::string::npos) {
      throw PetalError("file name with a tab or newline cannot be listed: " + f.relative);
    }
    const std::string label = relative.begin()->string();
    files << f.relative << '\t' << label << '\t' << f.size << '\t' << f.sha256 << '\n';
    ++per_class[label];
  }
  files.close();
  if (per_class.empty()) {
    throw PetalError("download: " + root.string() +
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
  json dataset = origin;
  dataset["root"] = root_text;
  dataset["root_is_relative"] = !fs::path(root_text).is_absolute();
  dataset["digest"] = tree.digest;
  dataset["images"] = images;
  dataset["classes"] = counts;
  dataset["bytes"] = tree.total_size;
  std::ofstream(ctx.output_dir / "dataset.json") << dataset.dump(2) << "\n";
  ctx.report.artifact("dataset.json");
  ctx.report.artifact("classes.txt");
  ctx.report.metric("images", static_cast<double>(images));
  ctx.report.metric("classes", static_cast<double>(per_class.size()));
  ctx.report.note(std::to_string(images) + " images in " + std::to_string(per_class.size()) + " classes from " +
                  origin.value("from", root.string()));
  if (skipped_other || skipped_unlabelled) {
    ctx.report.note("ignored " + std::to_string(skipped_other) + " non-image files and " +
                    std::to_string(skipped_unlabelled) + " images outside class folders");
  }
}

void run_download(StageContext& ctx) {
  if (effective_source(ctx.params) == "local") {
    const fs::path root = ctx.params.at("path").get<std::string>();
    write_listing(ctx, root, root.string(), json{{"source", "local"}, {"from", root.string()}});
    return;
  }
  const std::string url = ctx.params.at("url").get<std::string>();
  if (url.empty()) {
    throw PetalError("download.path " + ctx.params.at("path").get<std::string>() +
                     " does not exist and download.url is empty; point download.path at an image folder or set "
                     "download.url to an archive");
  }
  const fs::path scratch = ctx.log_file.parent_path();
  const fs::path archive = scratch / "download.archive";
  FetchOptions options;
  options.expected_sha256 = ctx.params.at("sha256").get<std::string>();
  options.cancelled = ctx.cancelled;
  const FetchResult fetched = fetch_url(url, archive, options);
  const fs::path extracted = ctx.output_dir / "extracted";
  fs::create_directories(extracted);
  extract_archive(archive, extracted);
  fs::remove(archive);
  const std::string subdir = ctx.params.at("subdir").get<std::string>();
  const fs::path root = subdir.empty() ? extracted : extracted / subdir;
  if (!fs::is_directory(root)) {
    throw PetalError("download.subdir '" + subdir + "' is not a folder inside the archive from " + url);
  }
  write_listing(ctx, root, fs::path("extracted" / fs::path(subdir)).lexically_normal().string(),
                json{{"source", "url"}, {"from", url}, {"archive_sha256", fetched.sha256},
                     {"archive_bytes", fetched.bytes}});
  if (options.expected_sha256.empty()) {
    ctx.report.note("download.sha256 is empty: the archive was not verified (its sha256 was " + fetched.sha256 + ")");
  }
}

}  // namespace

StageKind make_download_stage() {
  StageKind kind;
  kind.name = "download";
  kind.version = "download/2";
  kind.summary = "bring a dataset into the pipeline: a local image folder or a downloaded archive";
  kind.params = {
      ParamSpec::choice("source", {"local", "url", "auto"}, "local",
                        "local: the folder `path`; url: the archive `url`; auto: `path` if it exists, else `url`"),
      ParamSpec::path("path", std::string(""), "a folder holding <class>/<image> files").allow_empty(),
      ParamSpec::text("url", std::string(""), "an archive (.tgz, .tar, .zip) of <class>/<image> folders"),
      ParamSpec::text("sha256", std::string(""), "the archive's expected sha256 (strongly recommended)"),
      ParamSpec::text("subdir", std::string(""), "the folder inside the archive that holds the class folders"),
      ParamSpec::strings("extensions", kDefaultExtensions, "file extensions counted as images"),
  };
  kind.check = [](const json& params) {
    std::vector<std::pair<std::string, std::string>> problems;
    const std::string source = params.at("source").get<std::string>();
    if (source == "local" && params.at("path").get<std::string>().empty()) {
      problems.emplace_back("path", "must be set when download.source = \"local\"");
    }
    if (source == "url" && params.at("url").get<std::string>().empty()) {
      problems.emplace_back("url", "must be set when download.source = \"url\"");
    }
    const std::string sha = params.at("sha256").get<std::string>();
    if (!sha.empty() && (sha.size() != 64 || sha.find_first_not_of("0123456789abcdef") != std::string::npos)) {
      problems.emplace_back("sha256", "must be 64 lowercase hex digits (got \"" + sha + "\")");
    }
    return problems;
  };
  kind.external_inputs = [](const json& params) {
    std::vector<ExternalInput> inputs;
    if (effective_source(params) == "local") inputs.push_back({"path", params.at("path").get<std::string>()});
    return inputs;
  };
  kind.run = run_download;
  return kind;
}

}  // namespace petal
