#include <doctest/doctest.h>

#include "pipeline/exec/executor.h"
#include "pipeline/util/sha256.h"
#include "stages/download/archive_extract.h"
#include "tests/support/test_support.h"

using namespace petal;
using petal::test::TempDir;

namespace {

// Builds served/flowers.tgz holding flower_photos/<class>/<n>.jpg plus a LICENSE.txt.
std::string make_archive(const TempDir& dir) {
  for (const char* label : {"daisy", "tulip"}) {
    for (int i = 0; i < 3; ++i) {
      test::write_file(dir / "src/flower_photos" / label / (std::to_string(i) + ".jpg"), std::string(label) + std::to_string(i));
    }
  }
  test::write_file(dir / "src/flower_photos/LICENSE.txt", "CC-BY");
  std::filesystem::create_directories(dir / "served");
  REQUIRE(test::run_command("tar -czf " + (dir / "served/flowers.tgz").string() + " -C " + (dir / "src").string() +
                            " flower_photos") == 0);
  return sha256_file(dir / "served/flowers.tgz");
}

struct Outcome {
  RunResult result;
  std::filesystem::path out;
};

Outcome run_download(const TempDir& dir, const std::string& table) {
  test::write_file(dir / "x.toml", "name = \"dl\"\n[download]\n" + table);
  const Experiment e = load_experiment(dir / "x.toml", test::test_registry());
  const Graph g = Graph::build(e, test::test_registry());
  StageCache cache(dir / "state/cache");
  DigestCache digests(dir / "state/digests.tsv");
  RunLog log(dir / "state/runs.log");
  const Plan plan = make_plan(g, cache, digests, false);
  ExecutionObserver quiet;
  ExecuteOptions options;
  options.run_id = "r";
  options.experiment = "dl";
  options.base_dir = dir.path();
  Outcome o{execute(plan, cache, log, quiet, options), cache.out_dir(plan.stages[0].key)};
  return o;
}

}  // namespace

TEST_CASE("download fetches an archive over HTTP, verifies it and lists its images") {
  TempDir dir;
  const std::string sha = make_archive(dir);
  test::HttpServer server(dir / "served");
  const std::string table = "source = \"url\"\nurl = \"" + server.url("flowers.tgz") + "\"\nsha256 = \"" + sha +
                            "\"\nsubdir = \"flower_photos\"\n";
  const Outcome first = run_download(dir, table);
  REQUIRE(first.result.exit_code == 0);
  const StageOutcome& o = first.result.outcomes[0];
  CHECK(o.report.metrics.at("images") == 6);
  CHECK(test::read_file(first.out / "classes.txt") == "daisy\ntulip\n");
  CHECK(test::read_file(first.out / "extracted/flower_photos/tulip/2.jpg") == "tulip2");
  CHECK(test::read_file(first.out / "dataset.json").find("\"root\": \"extracted/flower_photos\"") != std::string::npos);
  CHECK(run_download(dir, table).result.count(StageStatus::Cached) == 1);
}

TEST_CASE("a checksum mismatch fails the stage and keeps nothing") {
  TempDir dir;
  make_archive(dir);
  test::HttpServer server(dir / "served");
  const Outcome o = run_download(dir, "source = \"url\"\nurl = \"" + server.url("flowers.tgz") + "\"\nsha256 = \"" +
                                          std::string(64, '0') + "\"\n");
  CHECK(o.result.exit_code == kExitStageFailed);
  CHECK(o.result.outcomes[0].error.find("checksum mismatch for " + server.url("flowers.tgz") + ": expected sha256 000") ==
        0);
  CHECK_FALSE(std::filesystem::exists(o.out));
}

TEST_CASE("an HTTP 404 is a clear error naming the URL") {
  TempDir dir;
  std::filesystem::create_directories(dir / "served");
  test::HttpServer server(dir / "served");
  const Outcome o = run_download(dir, "source = \"url\"\nurl = \"" + server.url("missing.tgz") + "\"\n");
  CHECK(o.result.exit_code == kExitStageFailed);
  CHECK(o.result.outcomes[0].error == "cannot download " + server.url("missing.tgz") + ": HTTP status 404");
}

TEST_CASE("auto uses the local folder when present and the URL otherwise") {
  TempDir dir;
  const std::string sha = make_archive(dir);
  test::HttpServer server(dir / "served");
  const std::string table = "source = \"auto\"\npath = \"local\"\nurl = \"" + server.url("flowers.tgz") +
                            "\"\nsha256 = \"" + sha + "\"\nsubdir = \"flower_photos\"\n";
  const Outcome downloaded = run_download(dir, table);
  REQUIRE(downloaded.result.exit_code == 0);
  CHECK(test::read_file(downloaded.out / "dataset.json").find("\"source\": \"url\"") != std::string::npos);
  test::write_file(dir / "local/rose/1.jpg", "r");
  const Outcome local = run_download(dir, table);
  REQUIRE(local.result.exit_code == 0);
  CHECK(local.result.outcomes[0].status == StageStatus::Ran);
  CHECK(test::read_file(local.out / "classes.txt") == "rose\n");
}

TEST_CASE("extraction refuses entries and links that escape the target") {
  TempDir dir;
  const std::string script =
      "import io, tarfile, sys\n"
      "def add(t, name, data=b'x', link=None, kind=tarfile.REGTYPE):\n"
      "    info = tarfile.TarInfo(name); info.type = kind\n"
      "    if link: info.linkname = link\n"
      "    info.size = 0 if link else len(data)\n"
      "    t.addfile(info, None if link else io.BytesIO(data))\n"
      "with tarfile.open(sys.argv[1] + '/dotdot.tar', 'w') as t: add(t, 'ok/a.jpg'); add(t, '../evil.jpg')\n"
      "with tarfile.open(sys.argv[1] + '/absolute.tar', 'w') as t: add(t, '/tmp/petal-evil.jpg')\n"
      "with tarfile.open(sys.argv[1] + '/symlink.tar', 'w') as t: add(t, 'ok/link', link='../../etc', kind=tarfile.SYMTYPE)\n";
  test::write_file(dir / "make.py", script);
  REQUIRE(test::run_command("python3 " + (dir / "make.py").string() + " " + dir.path().string()) == 0);
  for (const char* name : {"dotdot.tar", "absolute.tar", "symlink.tar"}) {
    CAPTURE(name);
    std::filesystem::create_directories(dir / "out");
    CHECK_THROWS_WITH_AS(extract_archive(dir / name, dir / "out"), doctest::Contains("refusing to extract"), PetalError);
  }
  CHECK_FALSE(std::filesystem::exists(dir / "evil.jpg"));
  CHECK_FALSE(std::filesystem::exists("/tmp/petal-evil.jpg"));
}
