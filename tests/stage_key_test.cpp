#include <doctest/doctest.h>

#include "pipeline/cache/explain.h"
#include "pipeline/cache/stage_key.h"
#include "pipeline/dag/graph.h"
#include "tests/support/test_support.h"

using namespace petal;
using petal::test::TempDir;

namespace {

// The key of every stage of an experiment text, by stage name.
std::map<std::string, std::string> keys_of(const std::string& text, std::vector<std::string> overrides = {}) {
  TempDir dir;
  test::write_file(dir / "x.toml", text);
  const Experiment e = load_experiment(dir / "x.toml", test::test_registry(), LoadOptions{std::move(overrides)});
  const Graph g = Graph::build(e, test::test_registry());
  std::map<std::string, std::string> keys;
  for (const StageNode* node : g.order()) {
    std::map<std::string, std::string> inputs;
    for (const StageNode* up : node->needs) inputs[up->name()] = keys.at(up->name());
    keys[node->name()] = stage_key(stage_ingredients(*node, inputs, {}));
  }
  return keys;
}

const char* kPipeline =
    "name = \"d\"\n"
    "[a]\nkind = \"emit\"\ntext = \"x\"\nrate = 0.25\n"
    "[b]\nkind = \"concat\"\nneeds = [\"a\"]\n";

}  // namespace

TEST_CASE("keys are SHA-256 hex and stable across key order, whitespace, comments and spelling of numbers") {
  const auto keys = keys_of(kPipeline);
  CHECK(keys.at("a").size() == 64);
  const auto reordered = keys_of(
      "# the same experiment, written differently\n"
      "name   =   \"d\"\n"
      "[b]\nneeds = [ \"a\" ]   # comment\nkind = \"concat\"\n"
      "[a]\nrate = 2.5e-1\n  text = 'x'\n  kind = \"emit\"\nsleep_ms = 0\n\n\n");
  CHECK(reordered == keys);
  CHECK(keys_of(kPipeline, {"a.rate=0.250"}) == keys);
}

TEST_CASE("any semantic change gives a different key, and flows downstream") {
  const auto keys = keys_of(kPipeline);
  const auto text_changed = keys_of(kPipeline, {"a.text=y"});
  CHECK(text_changed.at("a") != keys.at("a"));
  CHECK(text_changed.at("b") != keys.at("b"));
  CHECK(keys_of(kPipeline, {"a.rate=0.5"}).at("a") != keys.at("a"));
  CHECK(keys_of(kPipeline, {"a.fail=true"}).at("a") != keys.at("a"));
  const auto b_changed = keys_of(kPipeline, {"b.text=!"});
  CHECK(b_changed.at("a") == keys.at("a"));
  CHECK(b_changed.at("b") != keys.at("b"));
}

TEST_CASE("a key does not depend on the experiment's name or description") {
  std::string renamed = kPipeline;
  renamed.replace(renamed.find("\"d\""), 3, "\"other\"\ndescription = \"words\"");
  CHECK(keys_of(renamed) == keys_of(kPipeline));
}

TEST_CASE("explain names the changed parameter with old and new values") {
  const nlohmann::json before = {{"kind", "emit"}, {"version", "emit/1"}, {"params", {{"text", "x"}, {"rate", 0.25}}},
                                 {"inputs", {{"a", "1111111111"}}}, {"external", {{"path", "aaaaaaaaaa"}}},
                                 {"env", {{"petal", "0.1.0"}}}};
  nlohmann::json after = before;
  after["params"]["rate"] = 0.5;
  CHECK(explain_key_change("t", before, after) == std::vector<std::string>{"parameter t.rate changed: 0.25 -> 0.5"});
  after = before;
  after["inputs"]["a"] = "2222222222";
  after["external"]["path"] = "bbbbbbbbbb";
  after["version"] = "emit/2";
  CHECK(explain_key_change("t", before, after) ==
        std::vector<std::string>{"implementation version changed: emit/1 -> emit/2",
                                 "input 'a' changed: its key went 11111111 -> 22222222",
                                 "external input t.path content changed: aaaaaaaa -> bbbbbbbb"});
  after = before;
  after["params"].erase("rate");
  after["params"]["seed"] = 3;
  CHECK(explain_key_change("t", before, after) ==
        std::vector<std::string>{"parameter t.rate removed (was 0.25)", "parameter t.seed added: 3"});
  CHECK(explain_key_change("t", before, before).empty());
}
