#include <doctest/doctest.h>

#include "pipeline/config/experiment.h"
#include "pipeline/config/param_spec.h"
#include "pipeline/dag/stage_registry.h"
#include "stages/train/train_params.h"
#include "tests/support/test_support.h"

using namespace petal;
using petal::test::TempDir;
using petal::test::write_file;
using nlohmann::json;

namespace {

Experiment load(const TempDir& dir, const std::string& text, std::vector<std::string> overrides = {}) {
  write_file(dir / "x.toml", text);
  return load_experiment(dir / "x.toml", test::test_registry(), LoadOptions{std::move(overrides)});
}

// Every error message of a failed load, one per line, with positions relative to the temp dir.
std::string errors_of(const TempDir& dir, const std::string& text, std::vector<std::string> overrides = {}) {
  try {
    load(dir, text, std::move(overrides));
  } catch (const PetalError& e) {
    return dir.relative(e.what());
  }
  return "(no error)";
}

}  // namespace

TEST_CASE("a valid experiment resolves with defaults filled in") {
  TempDir dir;
  const Experiment e = load(dir, "name = \"demo\"\n[greet]\nkind = \"emit\"\ntext = \"hi\"\n");
  CHECK(e.name == "demo");
  REQUIRE(e.stages.size() == 1);
  CHECK(e.stages[0].kind == "emit");
  CHECK(e.stages[0].params.at("text").value == "hi");
  CHECK(e.stages[0].params.at("sleep_ms").value == 0);
  CHECK(e.stages[0].params.at("rate").value == 0.5);
  CHECK(e.stages[0].params.at("text").where.line == 4);
  CHECK_FALSE(e.stages[0].params.at("sleep_ms").where.known());
}

TEST_CASE("exact error texts for invalid values") {
  TempDir dir;
  CHECK(errors_of(dir, "name = \"d\"\n[g]\nkind = \"emit\"\nsleep_ms = -3\n") ==
        "x.toml:4:1: g.sleep_ms must be >= 0 (got -3)");
  CHECK(errors_of(dir, "name = \"d\"\n[g]\nkind = \"emit\"\nsleep_ms = \"ten\"\n") ==
        "x.toml:4:1: g.sleep_ms must be an integer (got string \"ten\")");
  CHECK(errors_of(dir, "name = \"d\"\n[g]\nkind = \"emit\"\nrate = 0\n") ==
        "x.toml:4:1: g.rate must be > 0 and <= 1 (got 0)");
  CHECK(errors_of(dir, "name = \"d\"\n[split]\nratios = [0.5, 0.5]\n") ==
        "x.toml:3:1: split.ratios must be a list of 3 numbers (got array [0.5,0.5])");
  CHECK(errors_of(dir, "name = \"d\"\n[split]\nratios = [0.7, 0.2, 0.2]\n") ==
        "x.toml:3:1: split.ratios must sum to 1 (got 1.1)");
  CHECK(errors_of(dir, "name = \"d\"\n[download]\nsource = \"lcoal\"\npath = \".\"\n") ==
        "x.toml:3:1: download.source must be one of \"local\", \"url\", \"auto\", \"flowers102\" (got \"lcoal\"; did you mean \"local\"?)");
}

TEST_CASE("an integer too large for its consumer is an error at its position, not a crash in the stage") {
  TempDir dir;
  // Every integer is an int32 in the stages: a larger value once wrapped to a negative thread count.
  CHECK(errors_of(dir, "name = \"d\"\n[g]\nkind = \"emit\"\nsleep_ms = 0x7fffffffffffffff\n") ==
        "x.toml:4:1: g.sleep_ms must be <= 2147483647 (got 9223372036854775807)");
  CHECK(errors_of(dir, "name = \"d\"\n[g]\nkind = \"emit\"\n", {"g.sleep_ms=2147483648"}) ==
        "--set g.sleep_ms=2147483648: g.sleep_ms must be <= 2147483647 (got 2147483648)");
  CHECK(errors_of(dir, "name = \"d\"\n[g]\nkind = \"emit\"\nsleep_ms = 2147483647\n") == "(no error)");
  // The real train stage: threads as LibTorch accepts them.
  const auto specs = train_param_specs(TrainPhase::Train);
  json canonical;
  CHECK(check_param_value(*find_param(specs, "threads"), json(2147483648LL), &canonical) ==
        "must be <= 1024 (got 2147483648)");
  CHECK(check_param_value(*find_param(specs, "threads"), json(-1), &canonical) == "must be >= 0 (got -1)");
  CHECK(check_param_value(*find_param(specs, "epochs"), json(0), &canonical) == "must be >= 1 (got 0)");
}

TEST_CASE("every integer parameter of every built-in stage has an upper bound its consumer accepts") {
  const StageRegistry& registry = builtin_registry();
  for (const std::string& name : registry.names()) {
    for (const ParamSpec& spec : registry.find(name)->params) {
      if (spec.type != ParamType::Int) continue;
      INFO(name << "." << spec.name);
      REQUIRE(spec.max.has_value());
      CHECK(*spec.max <= 2147483647.0);
      CHECK(spec.min.has_value());
    }
  }
}

TEST_CASE("a choice that accepts booleans canonicalises them to the choice of that name") {
  const ParamSpec spec = ParamSpec::choice("channels_last", {"auto", "true", "false"}, "auto", "").accept_booleans();
  nlohmann::json canonical;
  CHECK(check_param_value(spec, true, &canonical).empty());
  CHECK(canonical == "true");  // the same cache key as the string "true"
  CHECK(check_param_value(spec, false, &canonical).empty());
  CHECK(canonical == "false");
  CHECK(check_param_value(spec, "auto", &canonical).empty());
  CHECK(canonical == "auto");
  CHECK(check_param_value(spec, 1, &canonical) ==
        "must be one of \"auto\", \"true\", \"false\" or a boolean (got 1)");
  const ParamSpec strict = ParamSpec::choice("mode", {"a", "b"}, "a", "");
  CHECK(check_param_value(strict, true, &canonical) == "must be one of \"a\", \"b\" (got boolean true)");
}

namespace {
// Defaults of the train stage's parameters, with `overrides` on top (canonical values).
nlohmann::json train_params_with(const nlohmann::json& overrides) {
  nlohmann::json params;
  for (const ParamSpec& spec : train_param_specs(TrainPhase::Train)) params[spec.name] = spec.default_value;
  params["model"] = "resnet18";
  params.update(overrides);
  return params;
}
}  // namespace

TEST_CASE("train.mixed_precision: false, true (= fp16), fp16 and bf16, and the CPU refuses all but false") {
  const std::vector<ParamSpec> specs = train_param_specs(TrainPhase::Finetune);
  const ParamSpec* spec = find_param(specs, "mixed_precision");
  REQUIRE(spec != nullptr);
  CHECK(spec->default_value == "false");
  nlohmann::json canonical;
  for (const nlohmann::json& value : {nlohmann::json("bf16"), nlohmann::json("fp16"), nlohmann::json(false)}) {
    CAPTURE(value);
    CHECK(check_param_value(*spec, value, &canonical).empty());
    CHECK(canonical == (value.is_boolean() ? "false" : value));
  }
  CHECK(check_param_value(*spec, true, &canonical).empty());
  CHECK(canonical == "true");  // an experiment written before bf16 keeps its meaning (fp16) and key
  CHECK(check_param_value(*spec, "bf32", &canonical) ==
        "must be one of \"false\", \"true\", \"fp16\", \"bf16\" (got \"bf32\"; did you mean \"bf16\"?)");

  using Problems = std::vector<std::pair<std::string, std::string>>;
  const Problems none;
  CHECK(check_train_params(train_params_with({{"mixed_precision", "bf16"}, {"device", "cuda"}}), TrainPhase::Train) == none);
  CHECK(check_train_params(train_params_with({{"mixed_precision", "bf16"}, {"device", "auto"}}), TrainPhase::Train) == none);
  CHECK(check_train_params(train_params_with({{"device", "cpu"}}), TrainPhase::Train) == none);
  const Problems on_cpu =
      check_train_params(train_params_with({{"mixed_precision", "bf16"}, {"device", "cpu"}}), TrainPhase::Train);
  REQUIRE(on_cpu.size() == 1);
  CHECK(on_cpu[0].first == "mixed_precision");
  CHECK(on_cpu[0].second.find("use false on the CPU") != std::string::npos);
}

TEST_CASE("unknown keys get a did-you-mean suggestion") {
  TempDir dir;
  CHECK(errors_of(dir, "nmae = \"d\"\n") ==
        "x.toml:1:1: unknown key 'nmae' (did you mean 'name'?); top-level keys are name, description, extends, "
        "tracking, and one table per stage\n"
        "x.toml:1:1: name is required: add name = \"flowers5\" (any name) at the top");
  CHECK(errors_of(dir, "name = \"d\"\n[g]\nkind = \"emit\"\ntxt = \"a\"\n") ==
        "x.toml:4:1: g.txt is not a parameter of stage kind 'emit' (did you mean 'text'?); its parameters are: "
        "text, sleep_ms, fail, rate");
  CHECK(errors_of(dir, "name = \"d\"\n[splt]\n") ==
        "x.toml:2:2: [splt] is not a known stage kind (did you mean 'split'?); known kinds: download, split, augment, train, "
        "finetune, evaluate, register, shell, emit, concat, via-worker; to name a stage freely, set kind = \"...\" in its table");
  CHECK(errors_of(dir, "name = \"d\"\n[tracking]\nurl = \"http://x\"\n") ==
        "x.toml:3:1: unknown key 'tracking.url' (did you mean 'uri'?); [tracking] allows enabled, uri, experiment");
}

TEST_CASE("all errors of a file are reported together") {
  TempDir dir;
  const std::string errors = errors_of(dir, "name = \"d\"\n[g]\nkind = \"emit\"\nsleep_ms = -1\nrate = 2.0\n");
  CHECK(errors == "x.toml:5:1: g.rate must be > 0 and <= 1 (got 2)\nx.toml:4:1: g.sleep_ms must be >= 0 (got -1)");
}

TEST_CASE("missing required parameters point at the stage's table") {
  TempDir dir;
  CHECK(errors_of(dir, "name = \"d\"\n[s]\nkind = \"shell\"\n") ==
        "x.toml:2:2: s.command is required: a string (run by /bin/sh; writes its outputs to $PETAL_OUT)");
}

TEST_CASE("TOML syntax errors carry the parser's position") {
  TempDir dir;
  const std::string errors = errors_of(dir, "name = \"d\"\n[g\n");
  CHECK(errors.rfind("x.toml:2:", 0) == 0);
  CHECK(errors.find("TOML syntax error") != std::string::npos);
}

TEST_CASE("extends merges base files, the including file wins") {
  TempDir dir;
  write_file(dir / "base.toml", "[g]\nkind = \"emit\"\ntext = \"base\"\nsleep_ms = 5\n");
  const Experiment e = load(dir, "extends = \"base.toml\"\nname = \"d\"\n[g]\ntext = \"mine\"\n");
  const auto& g = *e.find_stage("g");
  CHECK(g.params.at("text").value == "mine");
  CHECK(g.params.at("sleep_ms").value == 5);
  CHECK(g.params.at("sleep_ms").where.file == (dir / "base.toml").string());
}

TEST_CASE("errors in a base file name the base file") {
  TempDir dir;
  write_file(dir / "base.toml", "[g]\nkind = \"emit\"\nsleep_ms = -5\n");
  CHECK(errors_of(dir, "extends = \"base.toml\"\nname = \"d\"\n") == "base.toml:3:1: g.sleep_ms must be >= 0 (got -5)");
}

TEST_CASE("extends cycles and missing bases are errors") {
  TempDir dir;
  write_file(dir / "a.toml", "extends = \"b.toml\"\n");
  write_file(dir / "b.toml", "extends = \"a.toml\"\n");
  CHECK(errors_of(dir, "extends = \"a.toml\"\nname = \"d\"\n").find("`extends` forms a cycle: ") != std::string::npos);
  CHECK(errors_of(dir, "extends = \"nope.toml\"\nname = \"d\"\n") ==
        "x.toml:1:1: experiment file nope.toml does not exist (named by `extends`)");
}

TEST_CASE("extends naming a device, a folder or nothing says which, at the extends line") {
  TempDir dir;
  std::filesystem::create_directories(dir / "configs");
  CHECK(errors_of(dir, "extends = \"/dev/zero\"\nname = \"d\"\n") ==
        "x.toml:1:1: experiment file /dev/zero is not a regular file (a device, pipe or socket); name a .toml file "
        "(named by `extends`)");
  CHECK(errors_of(dir, "extends = \"configs\"\nname = \"d\"\n") ==
        "x.toml:1:1: experiment file " + (dir / "configs").string().substr(dir.path().string().size() + 1) +
            " is a folder; name a .toml file in it (named by `extends`)");
  CHECK(errors_of(dir, "extends = \"\"\nname = \"d\"\n") ==
        "x.toml:1:1: extends names an empty file name; name a base experiment file, e.g. extends = \"base.toml\"");
  CHECK(errors_of(dir, "extends = [\"\"]\nname = \"d\"\n") ==
        "x.toml:1:1: extends names an empty file name; name a base experiment file, e.g. extends = \"base.toml\"");
}

TEST_CASE("a huge value is shown once, clipped, in its error") {
  TempDir dir;
  const std::string huge(10 << 20, 'x');
  const std::string file_error = errors_of(dir, "name = \"d\"\n[g]\nkind = \"emit\"\nsleep_ms = \"" + huge + "\"\n");
  CHECK(file_error == "x.toml:4:1: g.sleep_ms must be an integer (got string \"" + std::string(79, 'x') +
                          "... (10485762 bytes))");
  const std::string set_error = errors_of(dir, "name = \"d\"\n[g]\nkind = \"emit\"\n", {"g.sleep_ms=" + huge});
  CHECK(set_error.size() < 400);
  CHECK(set_error.find("(10485771 bytes)") != std::string::npos);  // the --set text, clipped
  INFO(set_error);
  CHECK(set_error.find("(10485762 bytes)") != std::string::npos);  // the value (quoted), clipped
  const std::string choice_error = errors_of(dir, "name = \"d\"\n[split]\nmethod = \"" + huge + "\"\n");
  CHECK(choice_error.size() < 400);
}

TEST_CASE("needs = [] on a stage that reads inputs is an error at load time, naming what it reads") {
  TempDir dir;
  CHECK(errors_of(dir, "name = \"d\"\n[split]\nneeds = []\n") ==
        "x.toml:3:1: split.needs must name the stages it reads (got []); a split stage reads download: remove `needs` "
        "for that default, or list the stages, e.g. needs = [\"download\"]");
  // A kind without default inputs may stand alone.
  CHECK(errors_of(dir, "name = \"d\"\n[g]\nkind = \"emit\"\nneeds = []\n") == "(no error)");
}

TEST_CASE("--set overrides are typed and validated like the file") {
  TempDir dir;
  const std::string base = "name = \"d\"\n[g]\nkind = \"emit\"\n";
  const Experiment e = load(dir, base, {"g.sleep_ms=7", "g.text=plain words", "g.rate=1"});
  const auto& g = *e.find_stage("g");
  CHECK(g.params.at("sleep_ms").value == 7);
  CHECK(g.params.at("text").value == "plain words");
  CHECK(g.params.at("rate").value.is_number_float());
  CHECK(errors_of(dir, base, {"g.sleep_ms=-1"}) == "--set g.sleep_ms=-1: g.sleep_ms must be >= 0 (got -1)");
  CHECK(errors_of(dir, base, {"g.slep_ms=1"}) ==
        "--set g.slep_ms=1: g.slep_ms is not a parameter of stage kind 'emit' (did you mean 'sleep_ms'?); its "
        "parameters are: text, sleep_ms, fail, rate");
  CHECK(errors_of(dir, base, {"novalue"}) == "--set novalue: expected KEY=VALUE, e.g. --set train.epochs=5");
}

TEST_CASE("paths resolve against the file that set them and expand the environment") {
  TempDir dir;
  std::filesystem::create_directories(dir / "sub");
  write_file(dir / "sub" / "base.toml", "[download]\npath = \"data\"\n");
  ::setenv("PETAL_TEST_DATA", (dir / "elsewhere").c_str(), 1);
  Experiment e = load(dir, "extends = \"sub/base.toml\"\nname = \"d\"\n");
  CHECK(e.find_stage("download")->params.at("path").value == (dir / "sub" / "data").string());
  e = load(dir, "name = \"d\"\n[download]\npath = \"${PETAL_TEST_DATA}/flowers\"\n");
  CHECK(e.find_stage("download")->params.at("path").value == (dir / "elsewhere" / "flowers").string());
  ::unsetenv("PETAL_TEST_DATA");
  CHECK(errors_of(dir, "name = \"d\"\n[download]\npath = \"${PETAL_TEST_DATA}/flowers\"\n") ==
        "x.toml:3:1: download.path uses ${PETAL_TEST_DATA}, which is not set; set it or give a default: "
        "${PETAL_TEST_DATA:-/some/path}");
}

TEST_CASE("disabled stages disappear from the experiment") {
  TempDir dir;
  const Experiment e = load(dir, "name = \"d\"\n[g]\nkind = \"emit\"\nenabled = false\n[h]\nkind = \"emit\"\n");
  CHECK(e.stages.size() == 1);
  CHECK(e.find_stage("g") == nullptr);
}

TEST_CASE("canonical TOML output loads back to the same experiment") {
  TempDir dir;
  const Experiment e =
      load(dir, "name = \"d\"\ndescription = \"x\"\n[g]\nkind = \"emit\"\nrate = 1\n[c]\nkind = \"concat\"\nneeds = [\"g\"]\n");
  write_file(dir / "round.toml", experiment_to_toml(e));
  const Experiment again = load_experiment(dir / "round.toml", test::test_registry());
  CHECK(again.to_json() == e.to_json());
  CHECK(experiment_to_json(again) == experiment_to_json(e));
}
