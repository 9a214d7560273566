#pragma once
#include <cstdint>
#include <optional>
#include <string>

namespace petal {

// "2GB", "500M", "1.5 GiB", "1024" (bytes). Decimal units for KB/MB/GB/TB, binary for KiB...TiB;
// single letters K/M/G/T are binary. nullopt on malformed input.
std::optional<std::uint64_t> parse_byte_size(const std::string& text);
std::string format_bytes(std::uint64_t bytes);      // "1.4 GB"
std::string format_seconds(double seconds);         // "12ms", "3.4s", "2m05s"
// "250ms", "30s", "5m", "1.5h", "2d", or a plain number of seconds; nullopt on malformed or negative input.
std::optional<double> parse_duration(const std::string& text);

}  // namespace petal
