#include "stages/download/download_stage.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <map>
#include <mutex>
#include <regex>
#include <set>

#include "pipeline/cache/digest_cache.h"
#include "pipeline/util/error.h"
#include "pipeline/util/fs.h"
#include "pipeline/util/units.h"
#include "stages/download/archive_extract.h"
#include "stages/download/checksum.h"
#include "stages/download/flowers102.h"
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

// How the listed images are labelled.
enum class Layout {
  ImageFolder,  // <class>/<image>: the label is the first folder
  Flowers102,   // jpg/image_NNNNN.jpg: no label here; imagelabels.mat beside files.tsv holds them
};

const std::regex& flowers102_image() {
  static const std::regex pattern("jpg/image_[0-9]{5}\\.jpg");
  return pattern;
}

// Lists the images below `root` into the stage's output: files.tsv (path relative to `root`,
// label, size, sha256), classes.txt (ImageFolder only) and dataset.json. `root_text` is how
// dataset.json names the root: absolute for a local folder, relative to this output for a download.
void write_listing(StageContext& ctx, const fs::path& root, const std::string& root_text, const json& origin,
                   Layout layout) {
  std::set<std::string> extensions;
  for (const auto& e : ctx.params.at("extensions")) extensions.insert(lower(e.get<std::string>()));

  DigestCache no_store(ctx.output_dir / ".unused");  // the stage runs only when content changed
  const TreeDigest tree = no_store.digest(root);

  std::map<std::string, std::size_t> per_class;
  std::size_t images = 0, skipped_other = 0, skipped_unlabelled = 0;
  std::ofstream files(ctx.output_dir / "files.tsv");
  files << "path\tlabel\tsize\tsha256\n";
  for (const auto& f : tree.files) {
    if (ctx.cancelled && ctx.cancelled()) throw StageCancelled();
    const fs::path relative(f.relative);
    std::string label;
    if (layout == Layout::Flowers102) {
      if (!std::regex_match(f.relative, flowers102_image())) {
        ++skipped_other;
        continue;
      }
    } else {
      if (!extensions.count(lower(relative.extension().string()))) {
        ++skipped_other;
        continue;
      }
      if (std::distance(relative.begin(), relative.end()) < 2) {
        ++skipped_unlabelled;
        continue;
      }
      label = relative.begin()->string();
    }
    if (f.relative.find_first_of("\t\n") != std::string::npos) {
      throw PetalError("file name with a tab or newline cannot be listed: " + f.relative);
    }
    files << f.relative << '\t' << label << '\t' << f.size << '\t' << f.sha256 << '\n';
    ++images;
    if (layout == Layout::ImageFolder) ++per_class[label];
  }
  files.close();
  if (images == 0) {
    if (layout == Layout::Flowers102) {
      throw PetalError("download: " + origin.value("from", root.string()) +
                           " holds no jpg/image_NNNNN.jpg files; is it Oxford-102's 102flowers.tgz?",
                       {}, kExitStageFailed);
    }
    throw PetalError("download: " + root.string() +
                     " holds no images in class folders; expected <class>/<image> with extensions such as .jpg");
  }
  json dataset = origin;
  dataset["layout"] = layout == Layout::Flowers102 ? "flowers102" : "imagefolder";
  dataset["root"] = root_text;
  dataset["root_is_relative"] = !fs::path(root_text).is_absolute();
  dataset["digest"] = tree.digest;
  dataset["images"] = images;
  dataset["bytes"] = tree.total_size;
  if (layout == Layout::ImageFolder) {
    std::ofstream classes(ctx.output_dir / "classes.txt");
    json counts = json::object();
    for (const auto& [name, count] : per_class) {
      classes << name << '\n';
      counts[name] = count;
    }
    dataset["classes"] = counts;
    ctx.report.artifact("classes.txt");
    ctx.report.metric("classes", static_cast<double>(per_class.size()));
    ctx.report.note(std::to_string(images) + " images in " + std::to_string(per_class.size()) + " classes from " +
                    origin.value("from", root.string()));
  } else {
    dataset["labels"] = "imagelabels.mat";
    dataset["setid"] = "setid.mat";
    ctx.report.note(std::to_string(images) + " Oxford-102 images from " + origin.value("from", root.string()) +
                    " (labels and the official split: imagelabels.mat, setid.mat)");
  }
  std::ofstream(ctx.output_dir / "dataset.json") << dataset.dump(2) << "\n";
  ctx.report.artifact("dataset.json");
  ctx.report.metric("images", static_cast<double>(images));
  if (skipped_other || skipped_unlabelled) {
    ctx.report.note("ignored " + std::to_string(skipped_other) +
                    (layout == Layout::Flowers102 ? " files not named jpg/image_NNNNN.jpg" : " non-image files") +
                    (layout == Layout::ImageFolder
                         ? " and " + std::to_string(skipped_unlabelled) + " images outside class folders"
                         : std::string()));
  }
}

// Progress and retry lines go to the stage's log (kept with its cache entry, shown when it fails),
// and to stderr when that is a terminal: a 330 MB download should not look like a hang.
std::function<void(const std::string&)> stage_logger(const StageContext& ctx) {
  const fs::path log_file = ctx.log_file;
  const bool terminal = ::isatty(2) == 1;
  auto mutex = std::make_shared<std::mutex>();
  return [log_file, terminal, mutex](const std::string& line) {
    std::lock_guard<std::mutex> lock(*mutex);
    std::ofstream(log_file, std::ios::app) << line << '\n';
    if (terminal) std::fprintf(stderr, "%s\n", line.c_str());
  };
}

FetchOptions fetch_options(const StageContext& ctx) {
  FetchOptions options;
  options.cancelled = ctx.cancelled;
  options.log = stage_logger(ctx);
  return options;
}

void note_fetch(StageContext& ctx, const std::string& name, const FetchResult& fetched) {
  if (fetched.reused) {
    ctx.report.note(name + ": reused the verified copy in the download cache (" + fetched.path.string() + ")");
  } else if (fetched.resumed_from > 0) {
    ctx.report.note(name + ": resumed an interrupted download at " + format_bytes(fetched.resumed_from));
  }
}

// source = "flowers102": the official Oxford-102 files, verified, laid out as
//   extracted/jpg/image_NNNNN.jpg, imagelabels.mat, setid.mat, files.tsv (empty labels), dataset.json.
void run_flowers102(StageContext& ctx) {
  const std::vector<Flowers102File> files = flowers102_files(ctx.params.at("mirror").get<std::string>(),
                                                             ctx.params.at("checksums").get<std::vector<std::string>>());
  const FetchOptions base_options = fetch_options(ctx);
  json described = json::object();
  fs::path archive;
  for (const auto& file : files) {
    if (ctx.cancelled && ctx.cancelled()) throw StageCancelled();
    fs::path path;
    FileDigests digests;
    if (!file.local.empty()) {  // a local mirror folder: read in place, verified like a download
      std::error_code ec;
      if (!fs::is_regular_file(file.local, ec)) {
        throw PetalError("download: the flowers102 mirror has no " + file.local, {}, kExitStageFailed);
      }
      digests = digest_file(file.local);
      if (!digests.matches(file.checksum)) {
        throw PetalError("checksum mismatch for " + file.local + ": expected " + file.checksum.algorithm + " " +
                             file.checksum.hex + ", got " + digests.of(file.checksum.algorithm) +
                             "; the file was not used. Check the mirror or download.checksums.",
                         {}, kExitStageFailed);
      }
      path = file.local;
    } else {
      FetchOptions options = base_options;
      options.expected = file.checksum;
      options.name = file.name;
      const FetchResult fetched = fetch_url(file.url, {}, options);  // verified: kept in the download cache
      note_fetch(ctx, file.name, fetched);
      digests.sha256 = fetched.sha256;
      digests.md5 = fetched.md5;
      digests.bytes = fetched.bytes;
      path = fetched.path;
    }
    described[file.name] = json{{"url", file.local.empty() ? file.url : "file://" + file.local},
                                {"bytes", digests.bytes},
                                {"sha256", digests.sha256},
                                {"md5", digests.md5},
                                {"verified", file.checksum.to_string()}};
    if (file.name == "102flowers.tgz") {
      archive = path;
    } else {
      fs::copy_file(path, ctx.output_dir / file.name, fs::copy_options::overwrite_existing);
    }
  }
  const fs::path extracted = ctx.output_dir / "extracted";
  fs::create_directories(extracted);
  extract_archive(archive, extracted, ctx.cancelled);
  const json& tgz = described.at("102flowers.tgz");
  write_listing(ctx, extracted, "extracted",
                json{{"source", "flowers102"}, {"from", tgz.at("url")}, {"files", described}}, Layout::Flowers102);
  ctx.report.artifact("imagelabels.mat");
  ctx.report.artifact("setid.mat");
}

void run_download(StageContext& ctx) {
  const std::string source = effective_source(ctx.params);
  if (source == "flowers102") {
    run_flowers102(ctx);
    return;
  }
  if (source == "local") {
    const fs::path root = ctx.params.at("path").get<std::string>();
    write_listing(ctx, root, root.string(), json{{"source", "local"}, {"from", root.string()}}, Layout::ImageFolder);
    return;
  }
  const std::string url = ctx.params.at("url").get<std::string>();
  if (url.empty()) {
    throw PetalError("download.path " + ctx.params.at("path").get<std::string>() +
                     " does not exist and download.url is empty; point download.path at an image folder or set "
                     "download.url to an archive");
  }
  const fs::path scratch = ctx.log_file.parent_path();
  FetchOptions options = fetch_options(ctx);
  const std::string sha256 = ctx.params.at("sha256").get<std::string>();
  if (!sha256.empty()) options.expected = Checksum{"sha256", sha256};
  // Verified: the archive stays in the download cache for later runs. Unverified: a scratch file.
  const FetchResult fetched = fetch_url(url, scratch / "download.archive", options);
  note_fetch(ctx, "the archive", fetched);
  const fs::path extracted = ctx.output_dir / "extracted";
  fs::create_directories(extracted);
  extract_archive(fetched.path, extracted, ctx.cancelled);
  if (!fetched.in_cache) fs::remove(fetched.path);
  const std::string subdir = ctx.params.at("subdir").get<std::string>();
  const fs::path root = subdir.empty() ? extracted : extracted / subdir;
  if (!fs::is_directory(root)) {
    throw PetalError("download.subdir '" + subdir + "' is not a folder inside the archive from " + url);
  }
  write_listing(ctx, root, fs::path("extracted" / fs::path(subdir)).lexically_normal().string(),
                json{{"source", "url"}, {"from", url}, {"archive_sha256", fetched.sha256},
                     {"archive_bytes", fetched.bytes}},
                Layout::ImageFolder);
  if (sha256.empty()) {
    ctx.report.note("download.sha256 is empty: the archive was not verified (its sha256 was " + fetched.sha256 + ")");
  }
}

}  // namespace

StageKind make_download_stage() {
  StageKind kind;
  kind.name = "download";
  kind.version = "download/3";
  kind.summary = "bring a dataset into the pipeline: a local image folder, a downloaded archive or Oxford-102";
  kind.params = {
      ParamSpec::choice("source", {"local", "url", "auto", "flowers102"}, "local",
                        "local: the folder `path`; url: the archive `url`; auto: `path` if it exists, else `url`; "
                        "flowers102: the Oxford 102 Category Flower dataset (official files, verified)"),
      ParamSpec::path("path", std::string(""), "a folder holding <class>/<image> files").allow_empty(),
      ParamSpec::text("url", std::string(""), "an archive (.tgz, .tar, .zip) of <class>/<image> folders"),
      ParamSpec::text("sha256", std::string(""), "the archive's expected sha256 (strongly recommended)"),
      ParamSpec::text("revision", std::string(""),
                      "url: what identifies the remote file's version (a different value downloads it again); "
                      "`petal schedule` sets it to the server's ETag/Last-Modified"),
      ParamSpec::text("subdir", std::string(""), "the folder inside the archive that holds the class folders"),
      ParamSpec::strings("extensions", kDefaultExtensions, "file extensions counted as images"),
      ParamSpec::text("mirror", std::string(""),
                      "flowers102: a base URL or absolute folder serving 102flowers.tgz, imagelabels.mat and "
                      "setid.mat (default: $PETAL_DATA_MIRROR, else the official site)"),
      ParamSpec::strings("checksums", {},
                         "flowers102: overrides of the published checksums, \"<file>=sha256:<hex>\" or "
                         "\"<file>=md5:<hex>\" (for a repackaged mirror)"),
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
    const std::string mirror = params.at("mirror").get<std::string>();
    const auto checksums = params.at("checksums").get<std::vector<std::string>>();
    if (source == "flowers102") {
      if (!params.at("url").get<std::string>().empty()) {
        problems.emplace_back("url", "is not used when download.source = \"flowers102\"; set download.mirror to "
                                     "download the files from elsewhere");
      }
      if (!sha.empty()) {
        problems.emplace_back("sha256", "is not used when download.source = \"flowers102\"; override a file's "
                                        "checksum with download.checksums = [\"102flowers.tgz=sha256:<hex>\"]");
      }
      if (std::string problem = check_flowers102_mirror(mirror); !problem.empty()) problems.emplace_back("mirror", problem);
      for (auto& problem : check_flowers102_checksums(checksums)) problems.emplace_back("checksums", problem);
    } else {
      if (!mirror.empty()) problems.emplace_back("mirror", "is only used when download.source = \"flowers102\"");
      if (!checksums.empty()) problems.emplace_back("checksums", "is only used when download.source = \"flowers102\"");
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
