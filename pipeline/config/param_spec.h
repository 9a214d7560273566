#pragma once
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace petal {

enum class ParamType { Bool, Int, Float, String, Choice, Path, StringList, PathList, FloatList };

// The declaration of one stage parameter: its type, default and the values it allows. Validation
// turns a user's value into the canonical JSON that enters the cache key (so `1` and `1.0` for a
// float parameter give the same key).
struct ParamSpec {
  std::string name;
  ParamType type = ParamType::String;
  nlohmann::json default_value;  // null: the parameter is required
  std::string help;
  std::optional<double> min;     // numbers, and every element of a FloatList
  std::optional<double> max;
  bool min_exclusive = false;
  bool max_exclusive = false;
  std::vector<std::string> choices;  // Choice
  std::optional<std::size_t> length; // FloatList / StringList of a fixed length
  bool optional_empty = false;       // Path: "" allowed and means "not set"
  bool booleans_as_choices = false;  // Choice: a TOML true/false stands for the choice "true"/"false"

  static ParamSpec boolean(std::string name, bool fallback, std::string help);
  static ParamSpec integer(std::string name, std::optional<long long> fallback, std::string help);
  static ParamSpec real(std::string name, std::optional<double> fallback, std::string help);
  static ParamSpec text(std::string name, std::optional<std::string> fallback, std::string help);
  static ParamSpec choice(std::string name, std::vector<std::string> choices, std::string fallback, std::string help);
  static ParamSpec path(std::string name, std::optional<std::string> fallback, std::string help);
  static ParamSpec strings(std::string name, std::vector<std::string> fallback, std::string help);
  static ParamSpec paths(std::string name, std::vector<std::string> fallback, std::string help);
  static ParamSpec reals(std::string name, std::optional<std::vector<double>> fallback, std::string help);

  ParamSpec& at_least(double bound);
  ParamSpec& greater_than(double bound);
  ParamSpec& at_most(double bound);
  ParamSpec& less_than(double bound);
  ParamSpec& exactly(std::size_t count);
  ParamSpec& allow_empty();
  ParamSpec& accept_booleans();  // a Choice among "true", "false" and more, e.g. "auto"

  bool required() const { return default_value.is_null(); }
  std::string type_name() const;  // "an integer", "one of \"a\", \"b\"", ...
};

// Checks `value` (as parsed from TOML into JSON) against `spec`. On success returns an empty string
// and stores the canonical value; otherwise returns the complaint, phrased to follow the key, e.g.
// "must be > 0 (got -3)". Paths are checked for type only; the loader resolves them.
std::string check_param_value(const ParamSpec& spec, const nlohmann::json& value, nlohmann::json* canonical);

const ParamSpec* find_param(const std::vector<ParamSpec>& specs, const std::string& name);

}  // namespace petal
