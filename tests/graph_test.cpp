#include <doctest/doctest.h>

#include "pipeline/dag/graph.h"
#include "tests/support/test_support.h"

using namespace petal;
using petal::test::TempDir;

namespace {

Experiment load(const TempDir& dir, const std::string& text) {
  test::write_file(dir / "x.toml", text);
  return load_experiment(dir / "x.toml", test::test_registry());
}

std::string graph_error(const TempDir& dir, const std::string& text) {
  const Experiment e = load(dir, text);
  try {
    Graph::build(e, test::test_registry());
  } catch (const PetalError& error) {
    return dir.relative(error.what());
  }
  return "(no error)";
}

std::vector<std::string> order_of(const Graph& g) {
  std::vector<std::string> names;
  for (const auto* node : g.order()) names.push_back(node->name());
  return names;
}

}  // namespace

TEST_CASE("stages are ordered by dependency, ties by pipeline order then name") {
  TempDir dir;
  const Experiment e = load(dir,
                            "name = \"d\"\n"
                            "[z]\nkind = \"concat\"\nneeds = [\"b\", \"a\"]\n"
                            "[b]\nkind = \"emit\"\n"
                            "[a]\nkind = \"emit\"\n"
                            "[download]\npath = \".\"\n"
                            "[split]\n");
  const Graph g = Graph::build(e, test::test_registry());
  CHECK(order_of(g) == std::vector<std::string>{"download", "split", "a", "b", "z"});
  const StageNode* z = g.find("z");
  REQUIRE(z);
  REQUIRE(z->needs.size() == 2);
  CHECK(z->needs[0]->name() == "b");
  CHECK(g.find("download")->dependents.front()->name() == "split");
}

TEST_CASE("a missing upstream stage is an error with a suggestion") {
  TempDir dir;
  CHECK(graph_error(dir, "name = \"d\"\n[c]\nkind = \"concat\"\nneeds = [\"emitt\"]\n[emit1]\nkind = \"emit\"\n") ==
        "x.toml:4:1: stage 'c' needs stage 'emitt', which this experiment does not define or has disabled "
        "(did you mean 'emit1'?)");
  CHECK(graph_error(dir, "name = \"d\"\n[split]\n") ==
        "x.toml:2:2: stage 'split' needs stage 'download', which this experiment does not define or has disabled; "
        "add a [download] table, or set split.needs to the stages it should read");
}

TEST_CASE("cycles are reported with their path") {
  TempDir dir;
  CHECK(graph_error(dir,
                    "name = \"d\"\n[a]\nkind = \"concat\"\nneeds = [\"c\"]\n[b]\nkind = \"concat\"\nneeds = [\"a\"]\n"
                    "[c]\nkind = \"concat\"\nneeds = [\"b\"]\n") ==
        "x.toml:4:1: the stages form a cycle: a -> c -> b -> a; remove one of these `needs`");
  CHECK(graph_error(dir, "name = \"d\"\n[a]\nkind = \"concat\"\nneeds = [\"a\"]\n") ==
        "x.toml:4:1: stage 'a' needs itself");
}
