#include <doctest/doctest.h>

#include "pipeline/util/error.h"
#include "pipeline/util/fs.h"
#include "pipeline/util/sha256.h"
#include "pipeline/util/suggest.h"
#include "pipeline/util/units.h"
#include "tests/support/test_support.h"

using namespace petal;

TEST_CASE("sha256 matches the published test vectors") {
  CHECK(sha256_hex("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  CHECK(sha256_hex("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  test::TempDir dir;
  test::write_file(dir / "f", "abc");
  CHECK(sha256_file(dir / "f") == sha256_hex("abc"));
  CHECK_THROWS_AS(sha256_file(dir / "missing"), PetalError);
}

TEST_CASE("did-you-mean suggests close names only") {
  CHECK(closest_match("epoch", {"epochs", "seed"}) == "epochs");
  CHECK(closest_match("trian", {"train", "split"}) == "train");
  CHECK(closest_match("xyz", {"epochs", "seed"}).empty());
  CHECK(did_you_mean("nmae", {"name", "description"}) == " (did you mean 'name'?)");
}

TEST_CASE("byte sizes parse with decimal and binary units") {
  CHECK(parse_byte_size("2GB") == 2'000'000'000ULL);
  CHECK(parse_byte_size("500 MB") == 500'000'000ULL);
  CHECK(parse_byte_size("1.5GiB") == 1610612736ULL);
  CHECK(parse_byte_size("1024") == 1024ULL);
  CHECK(parse_byte_size("2M") == 2097152ULL);
  CHECK_FALSE(parse_byte_size("lots").has_value());
  CHECK_FALSE(parse_byte_size("2 parsecs").has_value());
}

TEST_CASE("environment expansion with defaults") {
  ::setenv("PETAL_TEST_VAR", "/data", 1);
  CHECK(expand_env("${PETAL_TEST_VAR}/x") == "/data/x");
  ::unsetenv("PETAL_TEST_VAR");
  CHECK(expand_env("${PETAL_TEST_VAR:-../d}/x") == "../d/x");
  std::string missing;
  CHECK(expand_env("${PETAL_TEST_VAR}/x", &missing) == "${PETAL_TEST_VAR}/x");
  CHECK(missing == "PETAL_TEST_VAR");
}

TEST_CASE("atomic writes replace the whole file and leave no temp files") {
  test::TempDir dir;
  write_file_atomically(dir / "f.txt", "one");
  write_file_atomically(dir / "f.txt", "two");
  CHECK(test::read_file(dir / "f.txt") == "two");
  int files = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator(dir.path())) ++files;
  CHECK(files == 1);
}

TEST_CASE("errors print file:line:col, the line and a caret") {
  test::TempDir dir;
  test::write_file(dir / "x.toml", "name = \"a\"\n[train]\nepochs = -3\n");
  const PetalError error("train.epochs must be > 0 (got -3)", SourceLocation{(dir / "x.toml").string(), 3, 10});
  const std::string text = format_error(error);
  CHECK(text == (dir / "x.toml").string() + ":3:10: train.epochs must be > 0 (got -3)\n    epochs = -3\n             ^");
}
