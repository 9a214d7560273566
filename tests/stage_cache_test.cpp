#include <doctest/doctest.h>

#include <atomic>
#include <fstream>
#include <future>
#include <thread>

#include "pipeline/cache/stage_cache.h"
#include "pipeline/util/file_lock.h"
#include "pipeline/util/fs.h"
#include "tests/support/test_support.h"

using namespace petal;
using petal::test::TempDir;

namespace {
const std::string kKey = std::string(64, 'a');

Manifest commit_entry(const StageCache& cache, const std::string& key, const std::string& content) {
  auto build = cache.begin(key);
  test::write_file(build->out_dir() / "value.txt", content);
  test::write_file(build->out_dir() / "sub/more.txt", "more");
  Manifest m;
  m.stage = "s";
  m.ingredients = {{"kind", "emit"}};
  return build->commit(m);
}
}  // namespace

TEST_CASE("a committed entry is found, with its manifest listing every file") {
  TempDir dir;
  StageCache cache(dir / "cache");
  CHECK(cache.lookup(kKey, false).state == EntryState::Missing);
  const Manifest m = commit_entry(cache, kKey, "hello");
  CHECK(m.files.size() == 2);
  CHECK(m.total_size == 9);
  const CacheLookup found = cache.lookup(kKey, true);
  REQUIRE(found.state == EntryState::Committed);
  CHECK(found.manifest->files[1].path == "value.txt");
  CHECK(test::read_file(cache.out_dir(kKey) / "value.txt") == "hello");
}

TEST_CASE("an abandoned build leaves nothing that looks like an entry") {
  TempDir dir;
  StageCache cache(dir / "cache");
  {
    auto build = cache.begin(kKey);
    test::write_file(build->out_dir() / "value.txt", "partial");
  }  // destroyed without commit
  CHECK(cache.lookup(kKey, false).state == EntryState::Missing);
  CHECK(std::filesystem::is_empty(dir / "cache/tmp"));
}

TEST_CASE("damaged entries are detected: missing file, changed size, changed mtime, missing manifest") {
  TempDir dir;
  StageCache cache(dir / "cache");
  commit_entry(cache, kKey, "hello");
  const auto file = cache.out_dir(kKey) / "value.txt";

  SUBCASE("missing file") {
    std::filesystem::remove(file);
    const auto r = cache.lookup(kKey, false);
    CHECK(r.state == EntryState::Damaged);
    CHECK(r.problem == "out/value.txt is missing");
  }
  SUBCASE("truncated file") {
    std::filesystem::resize_file(file, 2);
    CHECK(cache.lookup(kKey, false).problem == "out/value.txt has size 2, expected 5");
  }
  SUBCASE("same size, new mtime") {
    test::write_file(file, "HELLO");
    CHECK(cache.lookup(kKey, false).problem == "out/value.txt was modified after it was cached");
  }
  SUBCASE("same size and mtime, other content: only --verify sees it") {
    const auto mtime = std::filesystem::last_write_time(file);
    test::write_file(file, "HELLO");
    std::filesystem::last_write_time(file, mtime);
    CHECK(cache.lookup(kKey, false).state == EntryState::Committed);
    CHECK(cache.lookup(kKey, true).problem == "out/value.txt has different content (sha256 mismatch)");
  }
  SUBCASE("an extra file: only --verify sees it") {
    test::write_file(cache.out_dir(kKey) / "extra.txt", "x");
    CHECK(cache.lookup(kKey, false).state == EntryState::Committed);
    CHECK(cache.lookup(kKey, true).problem == "out/ holds 3 files, the manifest lists 2");
  }
  SUBCASE("missing manifest") {
    std::filesystem::remove(cache.entry_dir(kKey) / "manifest.json");
    CHECK(cache.lookup(kKey, false).problem == "manifest.json is missing or unreadable");
  }
  SUBCASE("a damaged entry can be discarded and rebuilt") {
    std::filesystem::remove(file);
    cache.discard(kKey);
    CHECK(cache.lookup(kKey, false).state == EntryState::Missing);
    commit_entry(cache, kKey, "again");
    CHECK(cache.lookup(kKey, true).state == EntryState::Committed);
  }
}

TEST_CASE("two builders of one key take turns, and the second sees the first one's entry") {
  TempDir dir;
  StageCache cache(dir / "cache");
  std::atomic<bool> first_holds{false};
  std::thread first([&] {
    auto build = cache.begin(kKey);
    first_holds = true;
    std::this_thread::sleep_for(std::chrono::milliseconds(150));
    test::write_file(build->out_dir() / "value.txt", "first");
    build->commit(Manifest{});
  });
  while (!first_holds) std::this_thread::yield();
  auto second = cache.begin(kKey);  // blocks until the first commits
  CHECK(cache.lookup(kKey, false).state == EntryState::Committed);
  CHECK(test::read_file(cache.out_dir(kKey) / "value.txt") == "first");
  first.join();
}

TEST_CASE("waiting for a key's lock gives up when asked to stop") {
  TempDir dir;
  StageCache cache(dir / "cache");
  auto holder = cache.begin(kKey);
  std::atomic<bool> stop{false};
  std::thread stopper([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(60));
    stop = true;
  });
  CHECK(cache.begin(kKey, [&] { return stop.load(); }) == nullptr);
  stopper.join();
}

TEST_CASE("leftover temp folders of dead builds are removed, live ones kept") {
  TempDir dir;
  StageCache cache(dir / "cache");
  auto live = cache.begin(kKey);
  std::filesystem::create_directories(dir / "cache/tmp" / (std::string(64, 'b') + ".123.0.abc") / "out");
  CHECK(cache.remove_stale_temps() == 1);
  CHECK(std::filesystem::exists(live->out_dir()));
}

TEST_CASE("a lock file deleted while another process waits on it: the waiter takes the new file, never a second lock") {
  TempDir dir;
  const std::filesystem::path path = dir / "k.lock";
  FileLock first = FileLock::acquire(path);
  std::promise<void> waiting, acquired, done;
  std::shared_future<void> done_future = done.get_future().share();
  std::thread waiter([&] {
    waiting.set_value();
    FileLock second = FileLock::acquire(path);  // opens the old inode, waits on it
    CHECK(second.held());
    acquired.set_value();
    done_future.wait();
  });
  waiting.get_future().wait();
  // The waiter may or may not have reached flock yet; either way it must end up holding the file
  // that is at `path`, so nobody else can lock it.
  first.remove_and_release(path);
  acquired.get_future().wait();
  CHECK(std::filesystem::exists(path));
  CHECK_FALSE(FileLock::try_acquire(path).held());
  done.set_value();
  waiter.join();
  CHECK(FileLock::try_acquire(path).held());
}

TEST_CASE("lock files of keys with nothing left are removed with the leftovers, held ones kept") {
  namespace fs = std::filesystem;
  TempDir dir;
  StageCache cache(dir / "cache");
  commit_entry(cache, kKey, "first");
  const std::string gone = std::string(64, 'c');
  { auto failed = cache.begin(gone); }  // a build that never committed: its temp folder goes, its lock stays
  const std::string busy = std::string(64, 'd');
  auto live = cache.begin(busy);
  cache.remove_stale_temps();
  CHECK(fs::exists(dir / "cache/locks" / (kKey + ".lock")));  // its entry is there
  CHECK_FALSE(fs::exists(dir / "cache/locks" / (gone + ".lock")));
  CHECK(fs::exists(dir / "cache/locks" / (busy + ".lock")));
  CHECK(cache.remove_if_unlocked(kKey));
  CHECK_FALSE(fs::exists(dir / "cache/locks" / (kKey + ".lock")));
  CHECK(cache.begin(kKey) != nullptr);  // the key can be built again
}

TEST_CASE("resume folders: kept while useful, removed once committed, abandoned or on commit") {
  namespace fs = std::filesystem;
  TempDir dir;
  StageCache cache(dir / "cache");
  const std::string committed(64, 'c'), fresh(64, 'd'), abandoned(64, 'e'), in_use(64, 'f');
  for (const auto& key : {committed, fresh, abandoned, in_use}) fs::create_directories(cache.resume_dir(key) / "epoch-1");
  {
    auto build = cache.begin(committed);
    build->commit(Manifest{});
  }
  fs::last_write_time(cache.resume_dir(abandoned), fs::file_time_type::clock::now() - std::chrono::hours(24 * 8));
  fs::last_write_time(cache.resume_dir(in_use), fs::file_time_type::clock::now() - std::chrono::hours(24 * 8));
  auto holder = cache.begin(in_use);  // someone is training it right now
  CHECK(cache.remove_stale_temps() == 2);
  CHECK_FALSE(fs::exists(cache.resume_dir(committed)));
  CHECK_FALSE(fs::exists(cache.resume_dir(abandoned)));
  CHECK(fs::exists(cache.resume_dir(fresh)));
  CHECK(fs::exists(cache.resume_dir(in_use)));
  cache.remove_resume_dir(fresh);
  CHECK_FALSE(fs::exists(cache.resume_dir(fresh)));
}
