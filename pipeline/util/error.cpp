#include "pipeline/util/error.h"

#include <fstream>

namespace petal {

std::string SourceLocation::to_string() const {
  if (file.empty()) return {};
  if (line <= 0) return file;
  return file + ":" + std::to_string(line) + ":" + std::to_string(column);
}

PetalError::PetalError(std::string message, SourceLocation where, int exit_code)
    : std::runtime_error(where.known() ? where.to_string() + ": " + message : message),
      where_(std::move(where)),
      message_(std::move(message)),
      exit_code_(exit_code) {}

namespace {
std::string join_errors(const std::vector<PetalError>& errors) {
  std::string text;
  for (const auto& e : errors) {
    if (!text.empty()) text += '\n';
    text += e.what();
  }
  return text;
}
}  // namespace

PetalErrors::PetalErrors(std::vector<PetalError> errors)
    : PetalError(join_errors(errors), {}, errors.empty() ? kExitUsage : errors.front().exit_code()),
      errors_(std::move(errors)) {}

namespace {
std::string source_line(const SourceLocation& where) {
  if (!where.known() || where.line <= 0) return {};
  std::ifstream in(where.file);
  if (!in) return {};
  std::string line;
  for (int i = 0; i < where.line; ++i) {
    if (!std::getline(in, line)) return {};
  }
  return line;
}

std::string format_one(const PetalError& error, bool with_context) {
  std::string text = error.what();
  if (!with_context) return text;
  const std::string line = source_line(error.where());
  if (line.empty()) return text;
  text += "\n    " + line + "\n    ";
  for (int i = 1; i < error.where().column; ++i) text += (line[i - 1] == '\t') ? '\t' : ' ';
  text += '^';
  return text;
}
}  // namespace

std::string format_error(const PetalError& error, bool with_context) {
  if (const auto* many = dynamic_cast<const PetalErrors*>(&error)) {
    std::string text;
    for (const auto& e : many->errors()) {
      if (!text.empty()) text += '\n';
      text += format_one(e, with_context);
    }
    return text;
  }
  return format_one(error, with_context);
}

}  // namespace petal
