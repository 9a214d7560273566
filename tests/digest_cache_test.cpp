#include <doctest/doctest.h>

#include <thread>

#include "pipeline/cache/digest_cache.h"
#include "pipeline/util/error.h"
#include "tests/support/test_support.h"

using namespace petal;
using petal::test::TempDir;
using petal::test::write_file;

namespace {
// Files older than the racy window, so the stat cache may remember them.
void age(const std::filesystem::path& path) {
  std::filesystem::last_write_time(path, std::filesystem::file_time_type::clock::now() - std::chrono::hours(1));
}
}  // namespace

TEST_CASE("folder digests cover names, sizes and content, and skip hidden files") {
  TempDir dir;
  write_file(dir / "data/a/1.jpg", "one");
  write_file(dir / "data/b/2.jpg", "two");
  DigestCache cache(dir / "store.tsv");
  const TreeDigest first = cache.digest(dir / "data");
  CHECK(first.files.size() == 2);
  CHECK(first.files[0].relative == "a/1.jpg");
  CHECK(first.total_size == 6);
  write_file(dir / "data/.DS_Store", "junk");
  CHECK(cache.digest(dir / "data").digest == first.digest);
  write_file(dir / "data/b/2.jpg", "TWO");
  CHECK(cache.digest(dir / "data").digest != first.digest);
  write_file(dir / "data/b/2.jpg", "two");
  std::filesystem::rename(dir / "data/b/2.jpg", dir / "data/b/3.jpg");
  CHECK(cache.digest(dir / "data").digest != first.digest);
  CHECK_THROWS_AS(cache.digest(dir / "nope"), PetalError);
}

TEST_CASE("the stat cache avoids re-reading unchanged files, across instances") {
  TempDir dir;
  for (int i = 0; i < 20; ++i) {
    write_file(dir / ("data/c/" + std::to_string(i) + ".jpg"), std::string(100, static_cast<char>('a' + i)));
    age(dir / ("data/c/" + std::to_string(i) + ".jpg"));
  }
  std::string digest;
  {
    DigestCache cache(dir / "store.tsv");
    const TreeDigest t = cache.digest(dir / "data");
    CHECK(t.rehashed == 20);
    digest = t.digest;
    cache.save();
  }
  DigestCache cache(dir / "store.tsv");
  TreeDigest again = cache.digest(dir / "data");
  CHECK(again.rehashed == 0);
  CHECK(again.digest == digest);
  write_file(dir / "data/c/3.jpg", std::string(100, 'z'));  // same size, new content and mtime
  again = cache.digest(dir / "data");
  CHECK(again.rehashed == 1);
  CHECK(again.digest != digest);
}

TEST_CASE("recently modified files are never remembered (racy-clean protection)") {
  TempDir dir;
  write_file(dir / "f.bin", "fresh");
  DigestCache cache(dir / "store.tsv");
  CHECK(cache.digest(dir / "f.bin").rehashed == 1);
  CHECK(cache.digest(dir / "f.bin").rehashed == 1);
}
