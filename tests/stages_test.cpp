#include <doctest/doctest.h>

#include <map>
#include <cstdio>
#include <cstdlib>
#include <sstream>

#include "pipeline/exec/executor.h"
#include "pipeline/util/sha256.h"
#include "tests/support/test_support.h"

using namespace petal;
using petal::test::TempDir;

namespace {

using Ran = test::ExperimentRun;

Ran run_text(const TempDir& dir, const std::string& text, std::vector<std::string> overrides = {}) {
  return test::run_experiment(dir, text, std::move(overrides));
}

// Real (BMP) images whose content depends only on (label, index), so two folders made alike are
// byte-identical and every image is distinct.
void make_bmp_folder(const std::filesystem::path& root, const std::map<std::string, int>& counts) {
  for (const auto& [label, n] : counts) {
    int label_seed = 0;
    for (char c : label) label_seed = label_seed * 31 + c;
    for (int i = 0; i < n; ++i) test::write_bmp(root / label / (label + std::to_string(i) + ".bmp"), label_seed * 1000 + i);
  }
}

void make_image_folder(const std::filesystem::path& root, const std::map<std::string, int>& counts) {
  for (const auto& [label, n] : counts) {
    for (int i = 0; i < n; ++i) test::write_file(root / label / (label + std::to_string(i) + ".jpg"), label + std::to_string(i));
  }
}

const char* kDataPipeline = "name = \"data\"\n[download]\npath = \"images\"\n[split]\n";
const char* kDownloadOnly = "name = \"data\"\n[download]\npath = \"images\"\n";

std::map<std::string, std::string> split_of(const std::filesystem::path& split_tsv) {
  std::map<std::string, std::string> out;
  std::istringstream in(test::read_file(split_tsv));
  std::string line;
  std::getline(in, line);
  while (std::getline(in, line)) {
    std::istringstream f(line);
    std::string path, label, split;
    std::getline(f, path, '\t');
    std::getline(f, label, '\t');
    std::getline(f, split, '\t');
    out[path] = label + ":" + split;
  }
  return out;
}

std::map<std::string, std::map<std::string, int>> split_counts(const std::filesystem::path& split_tsv) {
  std::map<std::string, std::map<std::string, int>> counts;
  for (const auto& [path, label_split] : split_of(split_tsv)) {
    const std::size_t colon = label_split.find(':');
    ++counts[label_split.substr(0, colon)][label_split.substr(colon + 1)];
  }
  return counts;
}

nlohmann::json quality_of(const Ran& ran) {
  return nlohmann::json::parse(test::read_file(ran.out.at("split") / "quality.json"));
}

}  // namespace

TEST_CASE("download lists an image folder by class with content digests") {
  TempDir dir;
  make_image_folder(dir / "images", {{"daisy", 3}, {"rose", 2}});
  test::write_file(dir / "images/readme.txt", "not an image");
  test::write_file(dir / "images/loose.jpg", "no class folder");
  const Ran ran = run_text(dir, kDownloadOnly);
  REQUIRE(ran.result.exit_code == 0);
  const std::string files = test::read_file(ran.out.at("download") / "files.tsv");
  CHECK(files.rfind("path\tlabel\tsize\tsha256\ndaisy/daisy0.jpg\tdaisy\t6\t", 0) == 0);
  CHECK(test::read_file(ran.out.at("download") / "classes.txt") == "daisy\nrose\n");
  CHECK(ran.by_stage.at("download").report.metrics.at("images") == 5);
  CHECK(ran.by_stage.at("download").report.notes.at(1) ==
        "ignored 1 non-image files and 1 images outside class folders");
}

TEST_CASE("a changed image re-runs download and split, an unchanged folder is cached") {
  TempDir dir;
  make_bmp_folder(dir / "images", {{"a", 4}, {"b", 4}});
  run_text(dir, kDataPipeline);
  CHECK(run_text(dir, kDataPipeline).result.count(StageStatus::Cached) == 2);
  test::write_bmp(dir / "images/a/a0.bmp", 999);
  CHECK(run_text(dir, kDataPipeline).result.count(StageStatus::Ran) == 2);
}

TEST_CASE("a missing dataset folder is a clear error naming the parameter") {
  TempDir dir;
  test::write_file(dir / "x.toml", kDataPipeline);
  const Experiment e = load_experiment(dir / "x.toml", test::test_registry());
  const Graph g = Graph::build(e, test::test_registry());
  StageCache cache(dir / "state/cache");
  DigestCache digests(dir / "state/digests.tsv");
  try {
    make_plan(g, cache, digests, false);
    FAIL("expected an error");
  } catch (const PetalError& error) {
    CHECK(error.where().line == 3);
    CHECK(error.message() == "download.path: " + (dir / "images").string() +
                                 " does not exist; point download.path at an existing file or folder (or override "
                                 "it with --set download.path=PATH)");
  }
}

TEST_CASE("split is stratified, reproducible for a seed, and different for another seed") {
  TempDir dir;
  make_bmp_folder(dir / "images", {{"a", 50}, {"b", 30}, {"c", 20}});
  const Ran first = run_text(dir, kDataPipeline);
  const auto counts = split_counts(first.out.at("split") / "split.tsv");
  CHECK(counts.at("a").at("train") == 40);
  CHECK(counts.at("a").at("val") == 5);
  CHECK(counts.at("a").at("test") == 5);
  CHECK(counts.at("c").at("val") == 2);
  CHECK(first.by_stage.at("split").report.metrics.at("train_images") == 80);

  TempDir other;
  make_bmp_folder(other / "images", {{"a", 50}, {"b", 30}, {"c", 20}});
  const Ran same = run_text(other, kDataPipeline);
  CHECK(test::read_file(same.out.at("split") / "split.tsv") == test::read_file(first.out.at("split") / "split.tsv"));
  const Ran reseeded = run_text(other, kDataPipeline, {"split.seed=7"});
  CHECK(test::read_file(reseeded.out.at("split") / "split.tsv") !=
        test::read_file(first.out.at("split") / "split.tsv"));
}

TEST_CASE("split excludes unreadable and corrupt images and lists why") {
  TempDir dir;
  make_bmp_folder(dir / "images", {{"a", 10}, {"b", 10}});
  test::write_file(dir / "images/a/empty.jpg", "");
  test::write_file(dir / "images/a/text.jpg", "this is not an image");
  test::write_file(dir / "images/b/truncated.jpg", std::string("\xFF\xD8\xFF\xE0\x00\x10JFIF\x00", 11) + std::string(200, 'x'));
  const Ran ran = run_text(dir, kDataPipeline);
  REQUIRE(ran.result.exit_code == 0);
  const auto quality = quality_of(ran);
  std::map<std::string, std::string> reasons;
  for (const auto& e : quality["excluded"]) reasons[e["path"]] = e["reason"];
  CHECK(reasons == std::map<std::string, std::string>{{"a/empty.jpg", "empty file"},
                                                      {"a/text.jpg", "not an image OpenCV can decode"},
                                                      {"b/truncated.jpg", "truncated JPEG (no end-of-image marker)"}});
  CHECK(split_of(ran.out.at("split") / "split.tsv").size() == 20);
  CHECK(ran.by_stage.at("split").report.metrics.at("excluded_images") == 3);
  for (const char* file : {"class_distribution.png", "samples.png", "quality.json", "source.json", "dataset.json"}) {
    CHECK(std::filesystem::file_size(ran.out.at("split") / file) > 0);
  }
}

TEST_CASE("identical images share a split, and conflicting labels are dropped or the first kept") {
  TempDir dir;
  make_bmp_folder(dir / "images", {{"a", 30}, {"b", 30}});
  for (int copy = 0; copy < 3; ++copy) test::write_bmp(dir / ("images/a/dup" + std::to_string(copy) + ".bmp"), 4242);
  test::write_bmp(dir / "images/a/clash.bmp", 777);
  test::write_bmp(dir / "images/b/clash.bmp", 777);
  const Ran dropped = run_text(dir, kDataPipeline);
  REQUIRE(dropped.result.exit_code == 0);
  const auto splits = split_of(dropped.out.at("split") / "split.tsv");
  CHECK(splits.at("a/dup0.bmp") == splits.at("a/dup1.bmp"));
  CHECK(splits.at("a/dup0.bmp") == splits.at("a/dup2.bmp"));
  CHECK(splits.count("a/clash.bmp") == 0);
  CHECK(splits.count("b/clash.bmp") == 0);
  const auto quality = quality_of(dropped);
  CHECK(quality["duplicate_groups"] == nlohmann::json::parse(R"([["a/dup0.bmp", "a/dup1.bmp", "a/dup2.bmp"]])"));
  CHECK(quality["label_conflicts"] == nlohmann::json::parse(R"([["a/clash.bmp", "b/clash.bmp"]])"));

  const Ran kept = run_text(dir, kDataPipeline, {"split.conflicts=keep-first"});
  const auto kept_splits = split_of(kept.out.at("split") / "split.tsv");
  CHECK(kept_splits.count("a/clash.bmp") == 1);
  CHECK(kept_splits.count("b/clash.bmp") == 0);
}

TEST_CASE("split by folders takes train, valid and test from the paths") {
  TempDir dir;
  make_bmp_folder(dir / "images/train", {{"x", 3}, {"y", 3}});
  make_bmp_folder(dir / "images/valid", {{"x", 1}});
  make_bmp_folder(dir / "images/test", {{"y", 2}});
  const Ran ran = run_text(dir, kDataPipeline);
  REQUIRE(ran.result.exit_code == 0);
  CHECK(quality_of(ran)["method"] == "folders");
  const auto splits = split_of(ran.out.at("split") / "split.tsv");
  CHECK(splits.at("train/x/x0.bmp") == "x:train");
  CHECK(splits.at("valid/x/x0.bmp") == "x:val");
  CHECK(splits.at("test/y/y1.bmp") == "y:test");
  CHECK(test::read_file(ran.out.at("split") / "classes.txt") == "x\ny\n");
}

TEST_CASE("the official Oxford-102 split comes from the real setid.mat and imagelabels.mat") {
  TempDir dir;
  const std::filesystem::path meta = test::datasets_dir() / "flowers102-meta";
  REQUIRE(std::filesystem::exists(meta / "setid.mat"));
  std::filesystem::create_directories(dir / "images");
  std::filesystem::copy_file(meta / "imagelabels.mat", dir / "images/imagelabels.mat");
  std::filesystem::copy_file(meta / "setid.mat", dir / "images/setid.mat");
  for (int number : {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 8189}) {
    char name[32];
    std::snprintf(name, sizeof name, "jpg/image_%05d.jpg", number);
    test::write_bmp(dir / "images" / name, number);
  }
  const Ran ran = run_text(dir, "name = \"ox\"\n[download]\npath = \"images\"\n[split]\nmethod = \"oxford102\"\n");
  REQUIRE(ran.result.exit_code == 0);
  const auto splits = split_of(ran.out.at("split") / "split.tsv");
  REQUIRE(splits.size() == 11);
  // Ground truth from the published files (scipy.io.loadmat): image 1 is class 77 in the test set,
  // image 8189 is class 62, both in the test set.
  CHECK(splits.at("jpg/image_00001.jpg") == "077:test");
  CHECK(splits.at("jpg/image_08189.jpg") == "062:test");
}

TEST_CASE("shell stages see their inputs and output folder, and report metrics") {
  TempDir dir;
  test::write_file(dir / "script.sh", "echo script-v1\n");
  const std::string text =
      "name = \"sh\"\n"
      "[make]\nkind = \"shell\"\ncommand = \"echo made > $PETAL_OUT/a.txt; echo '{\\\"score\\\": 0.75}' > $PETAL_METRICS\"\n"
      "[use]\nkind = \"shell\"\nneeds = [\"make\"]\ndeps = [\"script.sh\"]\n"
      "command = \"cat $PETAL_IN_MAKE/a.txt > $PETAL_OUT/b.txt; sh script.sh >> $PETAL_OUT/b.txt\"\n";
  const Ran ran = run_text(dir, text);
  REQUIRE(ran.result.exit_code == 0);
  CHECK(test::read_file(ran.out.at("use") / "b.txt") == "made\nscript-v1\n");
  CHECK(ran.by_stage.at("make").report.metrics.at("score") == 0.75);
  test::write_file(dir / "script.sh", "echo script-v2\n");  // a dependency's content is part of the key
  const Ran again = run_text(dir, text);
  CHECK(again.by_stage.at("make").status == StageStatus::Cached);
  CHECK(again.by_stage.at("use").status == StageStatus::Ran);
  CHECK(test::read_file(again.out.at("use") / "b.txt") == "made\nscript-v2\n");
}

TEST_CASE("a failing shell command fails the stage and shows its output") {
  TempDir dir;
  const Ran ran = run_text(dir, "name = \"sh\"\n[bad]\nkind = \"shell\"\ncommand = \"echo oops; exit 3\"\n");
  CHECK(ran.result.exit_code == kExitStageFailed);
  const StageOutcome& o = ran.by_stage.at("bad");
  CHECK(o.status == StageStatus::Failed);
  CHECK(o.error == "command failed (exit code 3); its output is in the stage log below");
  CHECK(o.log_tail == "oops\n");
}

TEST_CASE("an Oxford-102-shaped archive of generated images is downloaded, labelled and split with the real .mat files") {
  TempDir dir;
  const std::filesystem::path meta = test::datasets_dir() / "flowers102-meta";
  REQUIRE(std::filesystem::exists(meta / "setid.mat"));
  const std::vector<int> numbers = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 8189};
  for (int number : numbers) {
    char name[32];
    std::snprintf(name, sizeof name, "jpg/image_%05d.jpg", number);
    test::write_bmp(dir / "src" / name, number);
  }
  std::filesystem::create_directories(dir / "mirror");
  REQUIRE(test::run_command("tar -czf " + (dir / "mirror/102flowers.tgz").string() + " -C " + (dir / "src").string() +
                            " jpg") == 0);
  std::filesystem::copy_file(meta / "imagelabels.mat", dir / "mirror/imagelabels.mat");
  std::filesystem::copy_file(meta / "setid.mat", dir / "mirror/setid.mat");
  ::setenv("PETAL_DOWNLOAD_CACHE", (dir / "downloads").c_str(), 1);
  const std::string tgz_sha = sha256_file(dir / "mirror/102flowers.tgz");
  const Ran ran = run_text(dir, "name = \"ox\"\n[download]\nsource = \"flowers102\"\nmirror = \"" + (dir / "mirror").string() +
                                    "\"\nchecksums = [\"102flowers.tgz=sha256:" + tgz_sha + "\"]\n[split]\n");
  ::unsetenv("PETAL_DOWNLOAD_CACHE");
  REQUIRE(ran.result.exit_code == 0);
  CHECK(quality_of(ran)["method"] == "oxford102");
  const auto splits = split_of(ran.out.at("split") / "split.tsv");
  REQUIRE(splits.size() == numbers.size());
  CHECK(splits.at("jpg/image_00001.jpg") == "077:test");
  CHECK(splits.at("jpg/image_08189.jpg") == "062:test");
  // The images are readable through source.json's root, as the augment stage will read them.
  const auto source = nlohmann::json::parse(test::read_file(ran.out.at("split") / "source.json"));
  CHECK(std::filesystem::exists(std::filesystem::path(source.at("root").get<std::string>()) / "jpg/image_00012.jpg"));
}
