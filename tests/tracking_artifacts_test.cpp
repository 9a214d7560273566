#include <doctest/doctest.h>

#include <algorithm>
#include <cstdio>
#include <random>

#include "tests/support/mlflow_support.h"
#include "tests/support/test_support.h"
#include "tracking/mlflow_client.h"

using namespace petal;
using namespace petal::mlflow;
using nlohmann::json;

namespace {

// Writes `megabytes` of pseudo-random bytes in 64 KiB chunks (never the whole file in memory).
void write_random_file(const std::filesystem::path& path, int megabytes, unsigned seed) {
  std::FILE* out = std::fopen(path.c_str(), "wb");
  REQUIRE(out != nullptr);
  std::mt19937 random(seed);
  std::vector<unsigned char> chunk(64 * 1024);
  for (int i = 0; i < megabytes * 16; ++i) {
    for (auto& b : chunk) b = static_cast<unsigned char>(random());
    REQUIRE(std::fwrite(chunk.data(), 1, chunk.size(), out) == chunk.size());
  }
  std::fclose(out);
}

bool same_bytes(const std::filesystem::path& a, const std::filesystem::path& b) {
  std::error_code ec;
  if (std::filesystem::file_size(a, ec) != std::filesystem::file_size(b, ec)) return false;
  return test::read_file(a) == test::read_file(b);
}

const FileInfo* find(const std::vector<FileInfo>& files, const std::string& path) {
  const auto it = std::find_if(files.begin(), files.end(), [&](const FileInfo& f) { return f.path == path; });
  return it == files.end() ? nullptr : &*it;
}

std::vector<std::string> paths(const std::vector<FileInfo>& files) {
  std::vector<std::string> out;
  for (const auto& f : files) out.push_back(f.path + (f.is_dir ? "/" : ""));
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

TEST_CASE("artifacts: upload a file and a tree (20 MB file streamed), list, download, read back with MLflow") {
  Client client(test::mlflow_url());
  const std::string experiment = client.ensure_experiment(test::unique_name("artifacts"));
  const RunInfo run = client.create_run(experiment, "with-artifacts", 1700000000000);
  REQUIRE(run.artifact_uri.rfind("mlflow-artifacts:", 0) == 0);

  test::TempDir src;
  test::write_file(src / "report.json", "{\"accuracy\": 0.93}\n");
  test::write_file(src / "with space & +plus.txt", "odd name\n");
  test::write_file(src / "tree/a.txt", "alpha\n");
  test::write_file(src / "tree/sub/b.csv", "x,y\n1,2\n");
  test::write_file(src / "tree/sub/deeper/c.png", std::string("\x89PNG\r\n\x1a\n\0\0\0\rIHDR", 16));
  write_random_file(src / "tree/big.bin", 20, 42);

  client.upload_artifact(run, src / "report.json");
  client.upload_artifact(run, src / "with space & +plus.txt", "notes/odd dir");
  client.upload_artifacts(run, src / "tree", "tree");
  client.upload_artifact(run, src / "report.json", "tree/sub");  // a second copy, nested

  const auto root = client.list_artifacts(run.run_id);
  CHECK(paths(root) == std::vector<std::string>{"notes/", "report.json", "tree/"});
  const auto tree = client.list_artifacts(run.run_id, "tree");
  CHECK(paths(tree) == std::vector<std::string>{"tree/a.txt", "tree/big.bin", "tree/sub/"});
  REQUIRE(find(tree, "tree/big.bin") != nullptr);
  CHECK(find(tree, "tree/big.bin")->file_size == 20 * 1024 * 1024);
  CHECK(find(tree, "tree/a.txt")->file_size == 6);
  CHECK(paths(client.list_artifacts(run.run_id, "tree/sub")) ==
        std::vector<std::string>{"tree/sub/b.csv", "tree/sub/deeper/", "tree/sub/report.json"});
  CHECK(paths(client.list_artifacts(run.run_id, "notes/odd dir")) ==
        std::vector<std::string>{"notes/odd dir/with space & +plus.txt"});
  CHECK(client.list_artifacts(run.run_id, "no/such/folder").empty());

  test::TempDir dst;
  const std::vector<std::pair<std::string, std::string>> files = {
      {"report.json", "report.json"},
      {"notes/odd dir/with space & +plus.txt", "with space & +plus.txt"},
      {"tree/a.txt", "tree/a.txt"},
      {"tree/sub/b.csv", "tree/sub/b.csv"},
      {"tree/sub/deeper/c.png", "tree/sub/deeper/c.png"},
      {"tree/big.bin", "tree/big.bin"},
      {"tree/sub/report.json", "report.json"},
  };
  for (const auto& [artifact, local] : files) {
    CAPTURE(artifact);
    const auto target = dst / ("down/" + artifact);  // parent folders do not exist yet
    client.download_artifact(run, artifact, target);
    CHECK(same_bytes(target, src / local));
    CHECK_FALSE(std::filesystem::exists(target.string() + ".part"));
  }

  // MLflow's own client sees the same tree and the same bytes.
  const json back = test::python_json(
      "import filecmp, json, os, tempfile, mlflow\n"
      "c = mlflow.MlflowClient()\n"
      "run_id, src = '" + run.run_id + "', '" + src.path().string() + "'\n"
      "listed = sorted(f.path + ('/' if f.is_dir else '') for f in c.list_artifacts(run_id, 'tree/sub'))\n"
      "big = [f.file_size for f in c.list_artifacts(run_id, 'tree') if f.path == 'tree/big.bin']\n"
      "dst = tempfile.mkdtemp()\n"
      "local = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path='tree', dst_path=dst)\n"
      "got = sorted(os.path.relpath(os.path.join(d, f), local) for d, _, fs in os.walk(local) for f in fs)\n"
      "same = all(filecmp.cmp(os.path.join(local, p), os.path.join(src, 'tree', p), shallow=False)\n"
      "           for p in got if p != 'sub/report.json')\n"
      "odd = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path='notes/odd dir/with space & +plus.txt',\n"
      "                                          dst_path=tempfile.mkdtemp())\n"
      "print(json.dumps({'listed': listed, 'big': big, 'files': got, 'same': same, 'odd': open(odd).read()}))\n");
  CHECK(back["listed"] == json{"tree/sub/b.csv", "tree/sub/deeper/", "tree/sub/report.json"});
  CHECK(back["big"] == json{20 * 1024 * 1024});
  CHECK(back["files"] == json{"a.txt", "big.bin", "sub/b.csv", "sub/deeper/c.png", "sub/report.json"});
  CHECK(back["same"] == true);
  CHECK(back["odd"] == "odd name\n");
}

TEST_CASE("artifacts: uploading overwrites - missing files and folders are clear errors") {
  Client client(test::mlflow_url());
  const std::string experiment = client.ensure_experiment(test::unique_name("artifacts-errors"));
  const RunInfo run = client.create_run(experiment, "errors", 1700000000000);
  test::TempDir dir;
  test::write_file(dir / "v.txt", "one");
  client.upload_artifact(run, dir / "v.txt");
  test::write_file(dir / "v.txt", "two");
  client.upload_artifact(run, dir / "v.txt");
  client.download_artifact(run, "v.txt", dir / "out/v.txt");
  CHECK(test::read_file(dir / "out/v.txt") == "two");

  CHECK_THROWS_WITH_AS(client.upload_artifact(run, dir / "missing.txt"), doctest::Contains("not a readable regular file"),
                       PetalError);
  CHECK_THROWS_WITH_AS(client.upload_artifacts(run, dir / "v.txt"), doctest::Contains("not a directory"), PetalError);
  CHECK_THROWS_WITH_AS(client.upload_artifact(run, dir / "v.txt", "../escape"), doctest::Contains("must not contain '..'"),
                       PetalError);
  CHECK_THROWS_WITH_AS(client.upload_artifact(run, dir / "v.txt", "take#2"), doctest::Contains("must not contain '#'"),
                       PetalError);
  try {
    client.download_artifact(run, "no/such/file.txt", dir / "out/none.txt");
    FAIL("expected an error");
  } catch (const MlflowError& e) {
    CAPTURE(e.what());
    CHECK(e.status() >= 400);
    CHECK(e.status() < 500);
    CHECK(std::string(e.what()).find("download of artifact 'no/such/file.txt'") != std::string::npos);
  }
  CHECK_FALSE(std::filesystem::exists(dir / "out/none.txt"));
  CHECK_FALSE(std::filesystem::exists(dir / "out/none.txt.part"));
  RunInfo no_uri = run;
  no_uri.artifact_uri.clear();
  CHECK_THROWS_WITH_AS(client.download_artifact(no_uri, "v.txt", dir / "x"), doctest::Contains("has no artifact_uri"),
                       PetalError);
}

TEST_CASE("artifacts: proxy paths for both URI forms - other artifact stores are refused") {
  const std::string expected = "/api/2.0/mlflow-artifacts/artifacts/1/0a1b/artifacts/model/MLmodel";
  CHECK(Client::artifact_proxy_path("mlflow-artifacts:/1/0a1b/artifacts", "model/MLmodel") == expected);
  CHECK(Client::artifact_proxy_path("mlflow-artifacts://127.0.0.1:5000/1/0a1b/artifacts", "model/MLmodel") == expected);
  CHECK(Client::artifact_proxy_path("mlflow-artifacts://tracking.example:443/1/0a1b/artifacts/", "/model//MLmodel") == expected);
  CHECK(Client::artifact_proxy_path("mlflow-artifacts:/1/0a1b/artifacts", "") ==
        "/api/2.0/mlflow-artifacts/artifacts/1/0a1b/artifacts");
  CHECK(Client::artifact_proxy_path("mlflow-artifacts:/1/0a1b/artifacts", "plots/a b+1?%.png") ==
        "/api/2.0/mlflow-artifacts/artifacts/1/0a1b/artifacts/plots/a%20b%2B1%3F%25.png");
  CHECK_THROWS_WITH_AS(Client::artifact_proxy_path("mlflow-artifacts:/1/0a1b/artifacts", "plots/#1.png"),
                       doctest::Contains("must not contain '#': the MLflow server refuses such paths"), PetalError);
  CHECK_THROWS_WITH_AS(Client::artifact_proxy_path("mlflow-artifacts:/1/0a1b/artifacts", "model/../../other"),
                       doctest::Contains("must not contain '..'"), PetalError);

  CHECK_THROWS_WITH_AS(Client::artifact_proxy_path("s3://bucket/mlflow/1/0a1b/artifacts", "model"),
                       doctest::Contains("unsupported artifact location 's3://bucket/mlflow/1/0a1b/artifacts' (s3://)"),
                       PetalError);
  CHECK_THROWS_WITH_AS(Client::artifact_proxy_path("s3://bucket/x", "m"), doctest::Contains("artifact proxy"), PetalError);
  CHECK_THROWS_WITH_AS(Client::artifact_proxy_path("/srv/mlruns/1/0a1b/artifacts", "m"),
                       doctest::Contains("(a local path)"), PetalError);
  CHECK_THROWS_WITH_AS(Client::artifact_proxy_path("file:///srv/mlruns/1/0a1b/artifacts", "m"),
                       doctest::Contains("(file://)"), PetalError);

  // Refused before anything is sent (this client has no server at all).
  HttpSettings nowhere = HttpSettings::from_environment("http://127.0.0.1:9");
  nowhere.max_attempts = 1;
  Client client(nowhere);
  RunInfo run;
  run.run_id = "0a1b";
  run.artifact_uri = "s3://user:secret@bucket/1/0a1b/artifacts";
  test::TempDir dir;
  test::write_file(dir / "f.txt", "x");
  try {
    client.upload_artifact(run, dir / "f.txt");
    FAIL("expected an error");
  } catch (const HttpUnreachable&) {
    FAIL("an s3:// artifact URI must be refused before any request");
  } catch (const PetalError& e) {
    CHECK(std::string(e.what()).find("unsupported artifact location") != std::string::npos);
    CHECK(std::string(e.what()).find("secret") == std::string::npos);
  }
}
