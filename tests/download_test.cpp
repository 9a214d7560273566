#include <doctest/doctest.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <sstream>
#include <thread>

#include "pipeline/exec/executor.h"
#include "pipeline/util/sha256.h"
#include "stages/download/archive_extract.h"
#include "stages/download/checksum.h"
#include "stages/download/http_fetch.h"
#include "tests/support/test_support.h"

using namespace petal;
using petal::test::TempDir;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

// Sets an environment variable (or unsets it, for nullptr) until the end of the scope. Set before
// the executor starts its threads and restored after they ended.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = std::string(old);
    if (value) ::setenv(name, value, 1);
    else ::unsetenv(name);
  }
  ~ScopedEnv() {
    if (old_) ::setenv(name_.c_str(), old_->c_str(), 1);
    else ::unsetenv(name_.c_str());
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  std::string name_;
  std::optional<std::string> old_;
};

// tests/support/range_server.py on 127.0.0.1: files below `root` with Range support, faults set by
// control() (see the script), and every request logged; `work` holds its port file, log and control.
class RangeServer {
 public:
  RangeServer(const fs::path& root, const fs::path& work) : work_(work) {
    fs::create_directories(work);
    const std::string script = (test::source_dir() / "tests/support/range_server.py").string();
    const std::string port_file = (work / "port").string(), log = (work / "requests.log").string(),
                      control = (work / "control.json").string(), root_text = root.string();
    pid_ = ::fork();
    if (pid_ == 0) {
      const int null_fd = ::open("/dev/null", O_WRONLY);
      ::dup2(null_fd, 1);
      ::dup2(null_fd, 2);
      ::execlp("python3", "python3", script.c_str(), "--root", root_text.c_str(), "--port-file", port_file.c_str(),
               "--log", log.c_str(), "--control", control.c_str(), static_cast<char*>(nullptr));
      ::_exit(127);
    }
    for (int i = 0; i < 200; ++i) {  // the script writes its port once it listens (at most ~10 s)
      const std::string port = test::read_file(port_file);
      if (!port.empty()) {
        port_ = std::stoi(port);
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    throw std::runtime_error("range_server.py did not start");
  }
  ~RangeServer() {
    if (pid_ > 0) {
      ::kill(pid_, SIGTERM);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  RangeServer(const RangeServer&) = delete;
  RangeServer& operator=(const RangeServer&) = delete;

  std::string base() const { return "http://127.0.0.1:" + std::to_string(port_); }
  std::string url(const std::string& name) const { return base() + "/" + name; }
  void control(const json& settings) const { test::write_file(work_ / "control.json", settings.dump()); }
  std::vector<json> requests() const {
    std::vector<json> out;
    std::istringstream lines(test::read_file(work_ / "requests.log"));
    for (std::string line; std::getline(lines, line);) {
      if (!line.empty()) out.push_back(json::parse(line));
    }
    return out;
  }

 private:
  fs::path work_;
  int pid_ = -1;
  int port_ = 0;
};

std::string random_bytes(std::size_t n, unsigned seed) {
  std::mt19937 generator(seed);
  std::string out(n, '\0');
  for (auto& c : out) c = static_cast<char>(generator() & 0xff);
  return out;
}

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

// Runs a one-stage experiment; downloads go to <dir>/dlcache, and $PETAL_DATA_MIRROR is `mirror`
// (unset when null).
Outcome run_download(const TempDir& dir, const std::string& table, const char* mirror = nullptr) {
  const std::string download_cache = (dir / "dlcache").string();
  ScopedEnv cache_env("PETAL_DOWNLOAD_CACHE", download_cache.c_str());
  ScopedEnv mirror_env("PETAL_DATA_MIRROR", mirror);
  test::ExperimentRun ran = test::run_experiment(dir, "name = \"dl\"\n[download]\n" + table);
  return Outcome{std::move(ran.result), ran.out.at("download")};
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
  const json dataset = json::parse(test::read_file(first.out / "dataset.json"));
  CHECK(dataset.at("root") == "extracted/flower_photos");
  CHECK(dataset.at("layout") == "imagefolder");
  CHECK(run_download(dir, table).result.count(StageStatus::Cached) == 1);
  // verified, so kept in the download cache under its checksum
  CHECK(fs::exists(dir / "dlcache/verified" / ("sha256-" + sha)));
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

// ---- the download cache: resume, retries, verification (tests/support/range_server.py) ----

TEST_CASE("a transfer cut off mid-way resumes with a Range request") {
  TempDir dir;
  const std::string sha = make_archive(dir);
  RangeServer server(dir / "served", dir / "server");
  server.control({{"cut_after", 100}});  // the first request gets 100 bytes, then the connection drops
  const Outcome o = run_download(dir, "source = \"url\"\nurl = \"" + server.url("flowers.tgz") + "\"\nsha256 = \"" +
                                          sha + "\"\nsubdir = \"flower_photos\"\n");
  REQUIRE(o.result.exit_code == 0);
  CHECK(test::read_file(o.out / "extracted/flower_photos/daisy/1.jpg") == "daisy1");
  const auto requests = server.requests();
  REQUIRE(requests.size() == 2);
  CHECK(requests[0].at("range").is_null());
  CHECK(requests[0].at("cut_after") == 100);
  CHECK(requests[1].at("range") == "bytes=100-");
  CHECK(requests[1].at("if_range").is_string());  // the ETag it got with the first byte
  CHECK(requests[1].at("status") == 206);
  const std::string log = test::read_file(o.out.parent_path() / "stage.log");
  CHECK(log.find("download flowers.tgz: transfer closed with") != std::string::npos);
  CHECK(log.find("resumed") == std::string::npos);  // resumed within the run, not from an earlier one
  CHECK(log.find(", 2 requests, sha256 verified") != std::string::npos);
}

TEST_CASE("a partial download survives a failed run and the next run resumes it") {
  TempDir dir;
  const std::string content = random_bytes(50000, 1);
  test::write_file(dir / "served/blob.bin", content);
  RangeServer server(dir / "served", dir / "server");
  FetchOptions options;
  options.cache_dir = dir / "dlcache";
  options.expected = Checksum{"sha256", sha256_hex(content)};
  options.attempts = 2;
  options.backoff = std::chrono::milliseconds(10);
  // first run: 20,000 bytes, then the connection drops; with one attempt allowed, the run fails
  server.control({{"cut_after", 20000}});
  std::string message;
  {
    FetchOptions failing = options;
    failing.attempts = 1;
    try {
      fetch_url(server.url("blob.bin"), {}, failing);
    } catch (const PetalError& e) {
      message = e.what();
    }
  }
  CHECK(message.find("cannot download " + server.url("blob.bin") + ": transfer closed with") == 0);
  CHECK(message.find("the 20.0 kB received are kept in") != std::string::npos);
  const fs::path part = dir / "dlcache/partial" / (sha256_hex(server.url("blob.bin")) + ".part");
  REQUIRE(fs::exists(part));
  CHECK(fs::file_size(part) == 20000);

  server.control(json::object());
  std::vector<std::string> lines;
  options.log = [&](const std::string& line) { lines.push_back(line); };
  const FetchResult second = fetch_url(server.url("blob.bin"), {}, options);
  CHECK(second.resumed_from == 20000);
  CHECK(second.in_cache);
  CHECK(test::read_file(second.path) == content);
  CHECK_FALSE(fs::exists(part));
  const auto requests = server.requests();
  REQUIRE(requests.size() == 2);
  CHECK(requests[1].at("range") == "bytes=20000-");
  CHECK(requests[1].at("status") == 206);
  REQUIRE_FALSE(lines.empty());
  CHECK(lines.front().find("download blob.bin: resuming at 20.0 kB") == 0);

  // a later fetch reuses the verified copy without a request
  const FetchResult third = fetch_url(server.url("blob.bin"), {}, options);
  CHECK(third.reused);
  CHECK(server.requests().size() == 2);
}

TEST_CASE("a server that ignores Range restarts the download cleanly from byte 0") {
  TempDir dir;
  const std::string content = random_bytes(30000, 2);
  test::write_file(dir / "served/blob.bin", content);
  RangeServer server(dir / "served", dir / "server");
  FetchOptions options;
  options.cache_dir = dir / "dlcache";
  options.attempts = 1;
  server.control({{"cut_after", 12345}});
  CHECK_THROWS_AS(fetch_url(server.url("blob.bin"), dir / "got.bin", options), PetalError);
  server.control({{"ignore_range", true}});
  std::vector<std::string> lines;
  options.log = [&](const std::string& line) { lines.push_back(line); };
  const FetchResult result = fetch_url(server.url("blob.bin"), dir / "got.bin", options);  // no checksum: not kept
  CHECK_FALSE(result.in_cache);
  CHECK(result.path == dir / "got.bin");
  CHECK(test::read_file(dir / "got.bin") == content);
  CHECK(result.sha256 == sha256_hex(content));
  const auto requests = server.requests();
  REQUIRE(requests.size() == 2);
  CHECK(requests[1].at("range") == "bytes=12345-");
  CHECK(requests[1].at("status") == 200);
  bool said = false;
  for (const auto& line : lines) said = said || line.find("starting again from byte 0") != std::string::npos;
  CHECK(said);
  CHECK(fs::is_empty(dir / "dlcache/verified"));
}

TEST_CASE("a damaged partial file fails the checksum and is downloaded again from byte 0") {
  TempDir dir;
  const std::string content = random_bytes(40000, 3);
  test::write_file(dir / "served/blob.bin", content);
  RangeServer server(dir / "served", dir / "server");
  FetchOptions options;
  options.cache_dir = dir / "dlcache";
  options.expected = Checksum{"md5", md5_hex(content)};
  // a partial file whose first 10,000 bytes are not the server's (a crash, a bad disk)
  const fs::path part = dir / "dlcache/partial" / (sha256_hex(server.url("blob.bin")) + ".part");
  test::write_file(part, std::string(10000, 'x'));
  const FetchResult result = fetch_url(server.url("blob.bin"), {}, options);
  CHECK(test::read_file(result.path) == content);
  CHECK(result.md5 == md5_hex(content));
  const auto requests = server.requests();
  REQUIRE(requests.size() == 2);
  CHECK(requests[0].at("range") == "bytes=10000-");
  CHECK(requests[1].at("range").is_null());
}

TEST_CASE("a checksum mismatch deletes the download and a later run never uses it") {
  TempDir dir;
  const std::string sha = make_archive(dir);
  RangeServer server(dir / "served", dir / "server");
  const std::string url = server.url("flowers.tgz");
  const Outcome bad = run_download(dir, "source = \"url\"\nurl = \"" + url + "\"\nsha256 = \"" + std::string(64, 'a') +
                                            "\"\nsubdir = \"flower_photos\"\n");
  CHECK(bad.result.exit_code == kExitStageFailed);
  CHECK(bad.result.outcomes[0].error.find("checksum mismatch for " + url + ": expected sha256 aaaa") == 0);
  CHECK_FALSE(fs::exists(bad.out));
  CHECK(fs::is_empty(dir / "dlcache/verified"));
  CHECK_FALSE(fs::exists(dir / "dlcache/partial" / (sha256_hex(url) + ".part")));
  const Outcome good = run_download(dir, "source = \"url\"\nurl = \"" + url + "\"\nsha256 = \"" + sha +
                                             "\"\nsubdir = \"flower_photos\"\n");
  REQUIRE(good.result.exit_code == 0);
  const auto requests = server.requests();
  REQUIRE(requests.size() == 2);
  CHECK(requests[1].at("range").is_null());  // downloaded afresh, nothing kept from the bad file
}

TEST_CASE("a download answered with HTTP 503 is retried with backoff until the server answers") {
  TempDir dir;
  const std::string sha = make_archive(dir);
  RangeServer server(dir / "served", dir / "server");
  server.control({{"fail_first", 2}, {"fail_status", 503}});
  const Outcome o = run_download(dir, "source = \"url\"\nurl = \"" + server.url("flowers.tgz") + "\"\nsha256 = \"" +
                                          sha + "\"\nsubdir = \"flower_photos\"\n");
  REQUIRE(o.result.exit_code == 0);
  const auto requests = server.requests();
  REQUIRE(requests.size() == 3);
  CHECK(requests[0].at("status") == 503);
  CHECK(requests[1].at("status") == 503);
  CHECK(requests[2].at("status") == 200);
  const std::string log = test::read_file(o.out.parent_path() / "stage.log");
  CHECK(log.find("download flowers.tgz: HTTP status 503; retrying in 250ms") != std::string::npos);
  CHECK(log.find("download flowers.tgz: HTTP status 503; retrying in 500ms") != std::string::npos);
}

TEST_CASE("a 404 is not retried and names the URL") {
  TempDir dir;
  fs::create_directories(dir / "served");
  RangeServer server(dir / "served", dir / "server");
  const Outcome o = run_download(dir, "source = \"url\"\nurl = \"" + server.url("missing.tgz") + "\"\n");
  CHECK(o.result.exit_code == kExitStageFailed);
  CHECK(o.result.outcomes[0].error == "cannot download " + server.url("missing.tgz") + ": HTTP status 404");
  CHECK(server.requests().size() == 1);
}

TEST_CASE("download progress lines give size, rate and ETA at most once per interval") {
  TempDir dir;
  test::write_file(dir / "served/blob.bin", random_bytes(60000, 4));
  RangeServer server(dir / "served", dir / "server");
  server.control({{"rate", 100000}});  // 0.6 s
  FetchOptions options;
  options.cache_dir = dir / "dlcache";
  options.progress_interval = std::chrono::milliseconds(150);
  std::vector<std::string> lines;
  options.log = [&](const std::string& line) { lines.push_back(line); };
  const auto start = std::chrono::steady_clock::now();
  fetch_url(server.url("blob.bin"), dir / "blob.bin", options);
  const auto elapsed = std::chrono::steady_clock::now() - start;
  REQUIRE(lines.size() >= 2);
  CHECK(lines.size() <= static_cast<std::size_t>(elapsed / options.progress_interval) + 1);  // + the final line
  CHECK(lines.front().find("download blob.bin: ") == 0);
  CHECK(lines.front().find("/60.0 kB, ") != std::string::npos);
  CHECK(lines.front().find(" kB/s, ETA ") != std::string::npos);
  CHECK(lines.back().find("download blob.bin: 60.0 kB in ") == 0);
}

// ---- source = "flowers102" ----

namespace {

fs::path flowers102_meta() {
  const fs::path root = test::datasets_dir();
  return root / "flowers102-meta";
}

// served/: 102flowers.tgz with `images` files jpg/image_00001.jpg... (arbitrary bytes) and the real
// imagelabels.mat and setid.mat. Returns the tgz's sha256.
std::string make_flowers102(const TempDir& dir, int images) {
  for (int i = 1; i <= images; ++i) {
    char name[32];
    std::snprintf(name, sizeof name, "jpg/image_%05d.jpg", i);
    test::write_file(dir / "flowers-src" / name, random_bytes(100 + i, static_cast<unsigned>(i)));
  }
  fs::create_directories(dir / "served");
  REQUIRE(test::run_command("tar -czf " + (dir / "served/102flowers.tgz").string() + " -C " +
                            (dir / "flowers-src").string() + " jpg") == 0);
  for (const char* name : {"imagelabels.mat", "setid.mat"}) {
    REQUIRE_MESSAGE(fs::exists(flowers102_meta() / name), "set PETAL_DATASETS to the shared datasets folder");
    fs::copy_file(flowers102_meta() / name, dir / "served" / name);
  }
  return sha256_file(dir / "served/102flowers.tgz");
}

}  // namespace

TEST_CASE("flowers102 downloads the three files from a mirror and lays them out for split") {
  TempDir dir;
  const std::string sha = make_flowers102(dir, 20);
  RangeServer server(dir / "served", dir / "server");
  // The fake tgz cannot match the published sha256; the .mat files are the real ones and do.
  const std::string table = "source = \"flowers102\"\nchecksums = [\"102flowers.tgz=sha256:" + sha + "\"]\n";
  const Outcome o = run_download(dir, table, server.base().c_str());
  REQUIRE(o.result.exit_code == 0);
  CHECK(o.result.outcomes[0].report.metrics.at("images") == 20);

  std::string expected = "path\tlabel\tsize\tsha256\n";
  for (int i = 1; i <= 20; ++i) {
    char name[32];
    std::snprintf(name, sizeof name, "jpg/image_%05d.jpg", i);
    expected += std::string(name) + "\t\t" + std::to_string(100 + i) + "\t" +
                sha256_file(dir / "flowers-src" / name) + "\n";
  }
  CHECK(test::read_file(o.out / "files.tsv") == expected);
  CHECK(test::read_file(o.out / "extracted/jpg/image_00007.jpg") == random_bytes(107, 7));
  for (const char* name : {"imagelabels.mat", "setid.mat"}) {
    CHECK(test::read_file(o.out / name) == test::read_file(flowers102_meta() / name));
  }
  CHECK_FALSE(fs::exists(o.out / "classes.txt"));
  const json dataset = json::parse(test::read_file(o.out / "dataset.json"));
  CHECK(dataset.at("layout") == "flowers102");
  CHECK(dataset.at("source") == "flowers102");
  CHECK(dataset.at("root") == "extracted");
  CHECK(dataset.at("root_is_relative") == true);
  CHECK(dataset.at("images") == 20);
  CHECK(dataset.at("from") == server.url("102flowers.tgz"));
  CHECK(dataset.at("labels") == "imagelabels.mat");
  CHECK(dataset.at("setid") == "setid.mat");
  CHECK(dataset.at("files").at("setid.mat").at("verified") == "md5:a5357ecc9cb78c4bef273ce3793fc85c");
  CHECK(dataset.at("files").at("102flowers.tgz").at("sha256") == sha);

  auto requests = server.requests();
  REQUIRE(requests.size() == 3);
  CHECK(requests[0].at("path") == "/imagelabels.mat");
  CHECK(requests[1].at("path") == "/setid.mat");
  CHECK(requests[2].at("path") == "/102flowers.tgz");

  CHECK(run_download(dir, table, server.base().c_str()).result.count(StageStatus::Cached) == 1);
  // another key (any parameter change) re-runs the stage from the verified copies: no transfer
  const Outcome again = run_download(dir, table + "extensions = [\".jpg\"]\n", server.base().c_str());
  REQUIRE(again.result.exit_code == 0);
  CHECK(again.result.outcomes[0].status == StageStatus::Ran);
  CHECK(test::read_file(again.out / "files.tsv") == expected);
  CHECK(server.requests().size() == 3);
}

TEST_CASE("flowers102: the mirror parameter wins over PETAL_DATA_MIRROR, and files are verified") {
  TempDir dir;
  const std::string sha = make_flowers102(dir, 3);
  // a local folder as the mirror; $PETAL_DATA_MIRROR points nowhere and must not be used
  const std::string table = "source = \"flowers102\"\nmirror = \"" + (dir / "served").string() +
                            "\"\nchecksums = [\"102flowers.tgz=sha256:" + sha + "\"]\n";
  const Outcome local = run_download(dir, table, "http://127.0.0.1:9/nothing-here");
  REQUIRE(local.result.exit_code == 0);
  CHECK(test::read_file(local.out / "files.tsv").find("jpg/image_00003.jpg\t\t103\t") != std::string::npos);

  // the published checksum does not match the fake tgz: refused, nothing kept
  RangeServer server(dir / "served", dir / "server");
  const Outcome refused = run_download(dir, "source = \"flowers102\"\nmirror = \"" + server.base() + "\"\n");
  CHECK(refused.result.exit_code == kExitStageFailed);
  CHECK(refused.result.outcomes[0].error.find("checksum mismatch for " + server.url("102flowers.tgz") +
                                              ": expected sha256 2d01ecc807db") == 0);
  CHECK_FALSE(fs::exists(refused.out));

  // a missing file is a clear error naming its URL (the download cache would otherwise supply it)
  fs::remove(dir / "served/setid.mat");
  fs::remove_all(dir / "dlcache");
  const Outcome missing = run_download(dir, "source = \"flowers102\"\nmirror = \"" + server.base() + "/\"\n");
  CHECK(missing.result.outcomes[0].error == "cannot download " + server.url("setid.mat") + ": HTTP status 404");
}

TEST_CASE("flowers102 parameters are checked when the experiment loads") {
  TempDir dir;
  const auto errors = [&](const std::string& table) {
    test::write_file(dir / "x.toml", "name = \"dl\"\n[download]\n" + table);
    try {
      load_experiment(dir / "x.toml", test::test_registry());
    } catch (const PetalError& e) {
      return std::string(e.what());
    }
    return std::string("(no error)");
  };
  CHECK(errors("source = \"flowers102\"\n") == "(no error)");
  CHECK(errors("source = \"flowers102\"\nsha256 = \"" + std::string(64, 'a') + "\"\n")
            .find("download.sha256 is not used when download.source = \"flowers102\"") != std::string::npos);
  CHECK(errors("source = \"flowers102\"\nchecksums = [\"setid.mat=md5:123\"]\n")
            .find("download.checksums entry \"setid.mat=md5:123\": the checksum must be sha256:<64 hex digits> or "
                  "md5:<32 hex digits>") != std::string::npos);
  CHECK(errors("source = \"flowers102\"\nchecksums = [\"labels.mat=md5:" + std::string(32, '0') + "\"]\n")
            .find("names an unknown file \"labels.mat\"") != std::string::npos);
  CHECK(errors("source = \"flowers102\"\nmirror = \"mirror.example.org/flowers\"\n")
            .find("download.mirror must be an http:// or https:// base URL") != std::string::npos);
  CHECK(errors("source = \"local\"\npath = \".\"\nmirror = \"https://example.org\"\n")
            .find("download.mirror is only used when download.source = \"flowers102\"") != std::string::npos);
}
