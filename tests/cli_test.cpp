#include <doctest/doctest.h>

#include <chrono>
#include <filesystem>
#include <thread>

#include "tests/support/test_support.h"

using namespace petal;
using petal::test::TempDir;

namespace {

struct Cli {
  TempDir dir;
  int code = 0;
  std::string out;
  int run(const std::string& args) {
    code = test::run_command("cd " + dir.path().string() + " && " + test::petal_binary() + " --state-dir state " + args,
                             &out);
    return code;
  }
};

const char* kShellPipeline =
    "name = \"cli\"\n"
    "[first]\nkind = \"shell\"\ncommand = \"echo 1 > $PETAL_OUT/v\"\n"
    "[second]\nkind = \"shell\"\nneeds = [\"first\"]\ncommand = \"cat $PETAL_IN_FIRST/v > $PETAL_OUT/v\"\n";

}  // namespace

TEST_CASE("petal --help and --version succeed") {
  Cli cli;
  CHECK(cli.run("--help") == 0);
  CHECK(cli.out.find("run") != std::string::npos);
  CHECK(cli.out.find("Exit codes") != std::string::npos);
  CHECK(cli.run("--version") == 0);
  CHECK(cli.out.rfind("petal 0.", 0) == 0);
  CHECK(cli.run("run --help") == 0);
  CHECK(cli.out.find("--explain") != std::string::npos);
}

TEST_CASE("bad command lines exit 2") {
  Cli cli;
  CHECK(cli.run("") == 2);
  CHECK(cli.run("frobnicate") == 2);
  CHECK(cli.run("run missing.toml") == 2);
}

TEST_CASE("run, then a cached re-run, then status --explain after an override") {
  Cli cli;
  test::write_file(cli.dir / "x.toml", kShellPipeline);
  REQUIRE(cli.run("run x.toml") == 0);
  CHECK(cli.out.find("petal: 2 ran, 0 cached") != std::string::npos);
  REQUIRE(cli.run("run x.toml") == 0);
  CHECK(cli.out.find("petal: 0 ran, 2 cached") != std::string::npos);
  REQUIRE(cli.run("status x.toml --explain --set \"first.command=echo 2 > \\$PETAL_OUT/v\"") == 0);
  CHECK(cli.out.find("first        shell      stale") != std::string::npos);
  CHECK(cli.out.find("why: parameter first.command changed: \"echo 1 > $PETAL_OUT/v\" -> \"echo 2 > $PETAL_OUT/v\"") !=
        std::string::npos);
  CHECK(cli.out.find("why: input 'first' changed: its key went ") != std::string::npos);
  REQUIRE(cli.run("run x.toml --explain --set \"first.command=echo 2 > \\$PETAL_OUT/v\"") == 0);
  CHECK(cli.out.find("why: parameter first.command changed") != std::string::npos);
  CHECK(cli.out.find("petal: 2 ran, 0 cached") != std::string::npos);
}

TEST_CASE("config errors exit 2 and show file:line:col, the line and a caret") {
  Cli cli;
  test::write_file(cli.dir / "x.toml", "name = \"e\"\n[s]\nkind = \"shell\"\ncomand = \"true\"\n");
  CHECK(cli.run("run x.toml") == 2);
  CHECK(cli.out.find("petal: error: x.toml:4:1: s.comand is not a parameter of stage kind 'shell' (did you mean "
                     "'command'?)") != std::string::npos);
  CHECK(cli.out.find("    comand = \"true\"\n    ^") != std::string::npos);
}

TEST_CASE("a failing stage exits 1 and prints its log") {
  Cli cli;
  test::write_file(cli.dir / "x.toml", "name = \"f\"\n[s]\nkind = \"shell\"\ncommand = \"echo broken >&2; false\"\n");
  CHECK(cli.run("run x.toml") == 1);
  CHECK(cli.out.find("FAILED") != std::string::npos);
  CHECK(cli.out.find("broken") != std::string::npos);
}

TEST_CASE("config prints canonical TOML and JSON") {
  Cli cli;
  test::write_file(cli.dir / "x.toml", kShellPipeline);
  REQUIRE(cli.run("config x.toml --set first.command=true") == 0);
  CHECK(cli.out.find("[first]\nartifacts = []\ncommand = \"true\"\ndeps = []\nkind = \"shell\"\nneeds = []") != std::string::npos);
  REQUIRE(cli.run("config x.toml --json") == 0);
  CHECK(cli.out.find("\"stages\": {") != std::string::npos);
}

TEST_CASE("gc and pin from the command line") {
  Cli cli;
  test::write_file(cli.dir / "x.toml", kShellPipeline);
  REQUIRE(cli.run("run x.toml --pin keep") == 0);
  CHECK(cli.out.find("pinned 2 entries as 'keep'") != std::string::npos);
  REQUIRE(cli.run("gc --max-size 0") == 0);
  CHECK(cli.out.find("removed 0, kept 2 pinned") != std::string::npos);
  REQUIRE(cli.run("pin --remove keep") == 0);
  REQUIRE(cli.run("gc --max-size 0 --dry-run") == 0);
  CHECK(cli.out.find("would remove 2") != std::string::npos);
  REQUIRE(cli.run("gc --max-size 0") == 0);
  CHECK(cli.run("run x.toml") == 0);
  CHECK(cli.out.find("petal: 2 ran") != std::string::npos);
  CHECK(cli.run("gc --max-size lots") == 2);
}

TEST_CASE("status --json lists every stage's state") {
  Cli cli;
  test::write_file(cli.dir / "x.toml", kShellPipeline);
  REQUIRE(cli.run("status x.toml --json") == 0);
  CHECK(cli.out.find("\"state\": \"stale\"") != std::string::npos);
}

TEST_CASE("two petal processes on one cache build each stage once and both succeed") {
  Cli cli;
  const std::string counter = (cli.dir / "executions.txt").string();
  test::write_file(cli.dir / "x.toml",
                   "name = \"c\"\n"
                   "[slow]\nkind = \"shell\"\ncommand = \"echo slow >> " + counter + "; sleep 0.5; echo s > $PETAL_OUT/v\"\n"
                   "[next]\nkind = \"shell\"\nneeds = [\"slow\"]\ncommand = \"echo next >> " + counter +
                   "; cat $PETAL_IN_SLOW/v > $PETAL_OUT/v\"\n");
  const std::string command = "cd " + cli.dir.path().string() + " && " + test::petal_binary() + " --state-dir state run x.toml";
  std::string out;
  const int code = test::run_command("(" + command + " > a.log 2>&1 & " + command + " > b.log 2>&1 & wait %1 && wait %2)", &out);
  CHECK(code == 0);
  const std::string logs = test::read_file(cli.dir / "a.log") + test::read_file(cli.dir / "b.log");
  CHECK(test::read_file(counter) == "slow\nnext\n");
  CHECK(logs.find("built by a concurrent run") != std::string::npos);
}

TEST_CASE("killing petal with SIGKILL also ends its stages' grandchildren") {
  Cli cli;
  test::write_file(cli.dir / "x.toml",
                   "name = \"orphans\"\n[s]\nkind = \"shell\"\n"
                   "command = \"sh -c 'sleep 1.5; echo late > " + (cli.dir / "late.txt").string() +
                   "' & echo $! > " + (cli.dir / "grandchild.pid").string() + "; wait\"\n");
  const std::string command = "cd " + cli.dir.path().string() + " && (" + test::petal_binary() +
                              " --state-dir state run x.toml > /dev/null 2>&1 & p=$!; sleep 0.5; kill -9 $p; wait $p)";
  test::run_command(command);
  REQUIRE(std::filesystem::exists(cli.dir / "grandchild.pid"));
  std::this_thread::sleep_for(std::chrono::milliseconds(1800));
  CHECK_FALSE(std::filesystem::exists(cli.dir / "late.txt"));
}

// The recipes shipped in experiments/ are documentation users copy: each must resolve as it stands
// (experiment files with `petal config`, sweep files with `petal sweep --list`). base.toml is only
// a base to extend (it has no name).
TEST_CASE("every shipped experiment and sweep file in experiments/ resolves") {
  const std::filesystem::path folder = test::source_dir() / "experiments";
  int checked = 0;
  for (const auto& entry : std::filesystem::directory_iterator(folder)) {
    const std::filesystem::path file = entry.path();
    if (file.extension() != ".toml" || file.filename() == "base.toml") continue;
    CAPTURE(file.filename().string());
    const bool sweep = test::read_file(file).find("\nexperiment = ") != std::string::npos;
    Cli cli;
    cli.run((sweep ? "sweep --list --no-tracking " : "config ") + file.string());
    INFO(cli.out);
    CHECK(cli.code == 0);
    ++checked;
  }
  CHECK(checked >= 5);
}
