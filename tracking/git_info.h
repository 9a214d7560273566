#pragma once
#include <filesystem>
#include <string>

namespace petal {

// The commit checked out in the git work tree containing `path` ("" if none), read from .git
// directly (HEAD, loose refs, packed-refs) so no git process is started.
std::string git_commit_of(const std::filesystem::path& path);

}  // namespace petal
