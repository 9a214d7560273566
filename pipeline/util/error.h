#pragma once
#include <stdexcept>
#include <string>
#include <vector>

namespace petal {

// A position in a user's file (1-based line and column); `file` may also name a pseudo-source
// such as "--set" for command-line overrides. An empty file means "no position known".
struct SourceLocation {
  std::string file;
  int line = 0;
  int column = 0;

  bool known() const { return !file.empty(); }
  std::string to_string() const;  // "file:line:col", "file" or ""
};

// Documented exit codes of the `petal` executable (see README "Exit codes").
enum ExitCode : int {
  kExitOk = 0,
  kExitStageFailed = 1,
  kExitUsage = 2,        // bad command line, bad experiment file
  kExitEnvironment = 3,  // cache or filesystem problems, missing tools
  kExitInterrupted = 130,
};

// A user-facing error: what went wrong, where, and (when we know) how to fix it.
class PetalError : public std::runtime_error {
 public:
  explicit PetalError(std::string message, SourceLocation where = {}, int exit_code = kExitUsage);

  const SourceLocation& where() const { return where_; }
  const std::string& message() const { return message_; }
  int exit_code() const { return exit_code_; }

 private:
  SourceLocation where_;
  std::string message_;
  int exit_code_;
};

// Several user errors found in one pass (e.g. every invalid key of an experiment file).
class PetalErrors : public PetalError {
 public:
  explicit PetalErrors(std::vector<PetalError> errors);
  const std::vector<PetalError>& errors() const { return errors_; }

 private:
  std::vector<PetalError> errors_;
};

// "file:12:9: message" followed, when the file can be read, by the offending line and a caret
// under the column, as ninja prints manifest errors.
std::string format_error(const PetalError& error, bool with_context = true);

}  // namespace petal
