#include "stages/download/archive_extract.h"

#include <archive.h>
#include <archive_entry.h>

#include <memory>
#include <string>

#include "pipeline/dag/stage_kind.h"
#include "pipeline/util/error.h"

namespace petal {

namespace fs = std::filesystem;

namespace {

// True when `relative` stays inside the destination once joined to it: not absolute and never
// climbing above its start with `..`.
bool stays_inside(const fs::path& relative) {
  if (relative.is_absolute()) return false;
  int depth = 0;
  for (const auto& part : relative) {
    if (part == "..") {
      if (--depth < 0) return false;
    } else if (part != "." && !part.empty()) {
      ++depth;
    }
  }
  return true;
}

}  // namespace

std::size_t extract_archive(const fs::path& archive, const fs::path& destination,
                            const std::function<bool()>& cancelled) {
  using Reader = std::unique_ptr<struct archive, decltype(&archive_read_free)>;
  using Writer = std::unique_ptr<struct archive, decltype(&archive_write_free)>;
  Reader reader(archive_read_new(), archive_read_free);
  Writer writer(archive_write_disk_new(), archive_write_free);
  archive_read_support_format_all(reader.get());
  archive_read_support_filter_all(reader.get());
  // Entries are checked above and joined to `destination` here, so their paths are absolute by
  // construction; libarchive still refuses `..` and writing through symlinks.
  archive_write_disk_set_options(writer.get(), ARCHIVE_EXTRACT_TIME | ARCHIVE_EXTRACT_SECURE_NODOTDOT |
                                                   ARCHIVE_EXTRACT_SECURE_SYMLINKS);
  if (archive_read_open_filename(reader.get(), archive.c_str(), 1 << 16) != ARCHIVE_OK) {
    throw PetalError("cannot open archive " + archive.string() + ": " + archive_error_string(reader.get()), {},
                     kExitStageFailed);
  }
  std::size_t files = 0;
  for (;;) {
    if (cancelled && cancelled()) throw StageCancelled();
    archive_entry* entry = nullptr;
    const int status = archive_read_next_header(reader.get(), &entry);
    if (status == ARCHIVE_EOF) break;
    if (status < ARCHIVE_WARN) {
      throw PetalError("corrupt archive " + archive.string() + ": " + archive_error_string(reader.get()), {},
                       kExitStageFailed);
    }
    const std::string name = archive_entry_pathname(entry);
    const fs::path relative(name);
    if (!stays_inside(relative)) {
      throw PetalError("archive " + archive.string() + " has an entry that would escape the target folder: '" + name +
                           "'; refusing to extract it",
                       {}, kExitStageFailed);
    }
    if (const char* link = archive_entry_symlink(entry)) {
      if (!stays_inside(relative.parent_path() / link)) {
        throw PetalError("archive " + archive.string() + " has a link '" + name + "' -> '" + link +
                             "' pointing outside the target folder; refusing to extract it",
                         {}, kExitStageFailed);
      }
    }
    if (const char* link = archive_entry_hardlink(entry)) {
      if (!stays_inside(link)) {
        throw PetalError("archive " + archive.string() + " has a hard link '" + name + "' -> '" + link +
                             "' pointing outside the target folder; refusing to extract it",
                         {}, kExitStageFailed);
      }
      archive_entry_set_hardlink(entry, (destination / link).c_str());
    }
    archive_entry_set_pathname(entry, (destination / relative).c_str());
    if (archive_write_header(writer.get(), entry) < ARCHIVE_WARN) {
      throw PetalError("cannot extract '" + name + "': " + archive_error_string(writer.get()), {}, kExitStageFailed);
    }
    if (archive_entry_size(entry) > 0) {
      const void* block = nullptr;
      size_t size = 0;
      la_int64_t offset = 0;
      int r;
      while ((r = archive_read_data_block(reader.get(), &block, &size, &offset)) == ARCHIVE_OK) {
        if (archive_write_data_block(writer.get(), block, size, offset) < ARCHIVE_WARN) {
          throw PetalError("cannot write '" + name + "': " + archive_error_string(writer.get()), {}, kExitStageFailed);
        }
      }
      if (r < ARCHIVE_WARN) {
        throw PetalError("corrupt archive " + archive.string() + " at '" + name + "': " +
                             archive_error_string(reader.get()),
                         {}, kExitStageFailed);
      }
    }
    archive_write_finish_entry(writer.get());
    if (archive_entry_filetype(entry) == AE_IFREG) ++files;
  }
  return files;
}

}  // namespace petal
