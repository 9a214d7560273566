#pragma once
// Quoting values into text that another program parses: a POSIX shell, or YAML. Emitted job files
// (pipeline/sweep/cluster_job.h) go through these so that any path or name is read back as the
// same one value.
#include <string>

namespace petal {

// One word for /bin/sh and bash: left bare when it has only characters no shell treats specially
// ([A-Za-z0-9_./:@+,-]), else in single quotes, each ' written as '\''. Never expands anything.
std::string shell_quote(const std::string& word);

// A YAML double-quoted scalar: ", \ and control characters escaped, everything else literal, so
// YAML never reads it as a number, boolean, null or anything but this string.
std::string yaml_quote(const std::string& text);

// The first control character (a newline, a tab, DEL, ...) in `text`, or -1. Emitters refuse such
// values where they would end up in a comment line (a newline there would start a new line of
// script or YAML).
int first_control_character(const std::string& text);

// `text` as an error message shows a user's value: whole when at most `max_bytes` long, else its
// start (cut at a UTF-8 character boundary) + "... (N bytes)". A 10 MB value once filled the
// terminal, twice.
std::string clipped(const std::string& text, std::size_t max_bytes = 80);

}  // namespace petal
