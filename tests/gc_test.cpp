#include <doctest/doctest.h>

#include <sys/stat.h>

#include "pipeline/cache/gc.h"
#include "pipeline/util/error.h"
#include "tests/support/test_support.h"

using namespace petal;
using petal::test::TempDir;

namespace {
std::string key_of(char c) { return std::string(64, c); }

void add_entry(const StageCache& cache, char c, std::size_t bytes, int age_hours) {
  auto build = cache.begin(key_of(c));
  test::write_file(build->out_dir() / "blob", std::string(bytes, c));
  Manifest m;
  m.stage = std::string(1, c);
  build->commit(m);
  cache.touch(key_of(c));
  std::filesystem::last_write_time(cache.entry_dir(key_of(c)) / "used",
                                   std::filesystem::file_time_type::clock::now() - std::chrono::hours(age_hours));
}
}  // namespace

TEST_CASE("gc removes least-recently-used entries down to the limit, never pinned ones") {
  TempDir dir;
  StageCache cache(dir / "cache");
  Pins pins(dir / "pins");
  add_entry(cache, 'a', 1000, 5);  // oldest, but pinned
  add_entry(cache, 'b', 1000, 4);
  add_entry(cache, 'c', 1000, 3);
  add_entry(cache, 'd', 1000, 1);  // newest
  pins.save(Pin{"deployed", "exp", {key_of('a')}, 0});

  const GcReport dry = collect_garbage(cache, pins, GcOptions{2000, true});
  CHECK(dry.removed.size() == 2);
  CHECK(cache.entries().size() == 4);

  const GcReport report = collect_garbage(cache, pins, GcOptions{2000, false});
  REQUIRE(report.removed.size() == 2);
  CHECK(report.removed[0].key == key_of('b'));
  CHECK(report.removed[1].key == key_of('c'));
  CHECK(report.bytes_before == 4000);
  CHECK(report.bytes_after == 2000);
  CHECK(report.pinned_kept == 1);
  CHECK(cache.lookup(key_of('a'), true).state == EntryState::Committed);
  CHECK(cache.lookup(key_of('b'), false).state == EntryState::Missing);
  CHECK(cache.lookup(key_of('d'), true).state == EntryState::Committed);
  // The removed entries' lock files go with them (they once stayed behind forever).
  CHECK_FALSE(std::filesystem::exists(dir / "cache/locks" / (key_of('b') + ".lock")));
  CHECK_FALSE(std::filesystem::exists(dir / "cache/locks" / (key_of('c') + ".lock")));
  CHECK(std::filesystem::exists(dir / "cache/locks" / (key_of('d') + ".lock")));
}

TEST_CASE("gc skips an entry whose key is being built right now") {
  TempDir dir;
  StageCache cache(dir / "cache");
  Pins pins(dir / "pins");
  add_entry(cache, 'a', 100, 2);
  add_entry(cache, 'b', 100, 1);
  auto busy = cache.begin(key_of('a'));
  const GcReport report = collect_garbage(cache, pins, GcOptions{0, false});
  CHECK(report.busy_kept == 1);
  CHECK(report.removed.size() == 1);
  CHECK(cache.lookup(key_of('a'), false).state == EntryState::Committed);
}

TEST_CASE("pins are saved, listed and removed by name") {
  TempDir dir;
  Pins pins(dir / "pins");
  pins.save(Pin{"p1", "exp", {"k1", "k2"}, 1});
  pins.save(Pin{"p2", "exp", {"k3"}, 2});
  CHECK(pins.list().size() == 2);
  CHECK(pins.pinned_keys() == std::set<std::string>{"k1", "k2", "k3"});
  CHECK(pins.remove("p1"));
  CHECK_FALSE(pins.remove("p1"));
  CHECK_THROWS_AS(pins.save(Pin{"../evil", "exp", {}, 0}), PetalError);
}
