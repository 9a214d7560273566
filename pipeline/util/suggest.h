#pragma once
#include <string>
#include <vector>

namespace petal {

std::size_t edit_distance(const std::string& a, const std::string& b);

// The closest candidate when it is plausibly a typo of `word` (distance at most a third of the
// word's length, at least 1, at most 3), else an empty string.
std::string closest_match(const std::string& word, const std::vector<std::string>& candidates);

// " (did you mean 'x'?)" or "" — ready to append to an error message.
std::string did_you_mean(const std::string& word, const std::vector<std::string>& candidates);

}  // namespace petal
