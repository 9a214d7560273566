#include "pipeline/config/param_spec.h"

#include <cmath>
#include <cstdint>
#include <limits>
#include <sstream>

#include "pipeline/util/quoting.h"
#include "pipeline/util/suggest.h"

namespace petal {

using nlohmann::json;

namespace {
// Every consumer holds integers in an `int` (ParamSpec::integer).
constexpr double kIntBackstop = static_cast<double>(std::numeric_limits<std::int32_t>::max());
}  // namespace

ParamSpec ParamSpec::boolean(std::string name, bool fallback, std::string help) {
  ParamSpec s;
  s.name = std::move(name);
  s.type = ParamType::Bool;
  s.default_value = fallback;
  s.help = std::move(help);
  return s;
}

ParamSpec ParamSpec::integer(std::string name, std::optional<long long> fallback, std::string help) {
  ParamSpec s;
  s.name = std::move(name);
  s.type = ParamType::Int;
  if (fallback) s.default_value = *fallback;
  s.help = std::move(help);
  // Every consumer holds integers in an `int`: a larger value would wrap there (threads =
  // 2147483648 reached LibTorch as a negative count). Stages set tighter bounds with at_most().
  s.max = kIntBackstop;
  return s;
}

ParamSpec ParamSpec::real(std::string name, std::optional<double> fallback, std::string help) {
  ParamSpec s;
  s.name = std::move(name);
  s.type = ParamType::Float;
  if (fallback) s.default_value = *fallback;
  s.help = std::move(help);
  return s;
}

ParamSpec ParamSpec::text(std::string name, std::optional<std::string> fallback, std::string help) {
  ParamSpec s;
  s.name = std::move(name);
  s.type = ParamType::String;
  if (fallback) s.default_value = *fallback;
  s.help = std::move(help);
  return s;
}

ParamSpec ParamSpec::choice(std::string name, std::vector<std::string> choices, std::string fallback,
                            std::string help) {
  ParamSpec s;
  s.name = std::move(name);
  s.type = ParamType::Choice;
  s.choices = std::move(choices);
  if (!fallback.empty()) s.default_value = fallback;
  s.help = std::move(help);
  return s;
}

ParamSpec ParamSpec::path(std::string name, std::optional<std::string> fallback, std::string help) {
  ParamSpec s;
  s.name = std::move(name);
  s.type = ParamType::Path;
  if (fallback) s.default_value = *fallback;
  s.help = std::move(help);
  return s;
}

ParamSpec ParamSpec::strings(std::string name, std::vector<std::string> fallback, std::string help) {
  ParamSpec s;
  s.name = std::move(name);
  s.type = ParamType::StringList;
  s.default_value = fallback;
  s.help = std::move(help);
  return s;
}

ParamSpec ParamSpec::paths(std::string name, std::vector<std::string> fallback, std::string help) {
  ParamSpec s = strings(std::move(name), std::move(fallback), std::move(help));
  s.type = ParamType::PathList;
  return s;
}

ParamSpec ParamSpec::reals(std::string name, std::optional<std::vector<double>> fallback, std::string help) {
  ParamSpec s;
  s.name = std::move(name);
  s.type = ParamType::FloatList;
  if (fallback) s.default_value = *fallback;
  s.help = std::move(help);
  return s;
}

ParamSpec& ParamSpec::at_least(double bound) { min = bound; min_exclusive = false; return *this; }
ParamSpec& ParamSpec::greater_than(double bound) { min = bound; min_exclusive = true; return *this; }
ParamSpec& ParamSpec::at_most(double bound) { max = bound; max_exclusive = false; return *this; }
ParamSpec& ParamSpec::less_than(double bound) { max = bound; max_exclusive = true; return *this; }
ParamSpec& ParamSpec::exactly(std::size_t count) { length = count; return *this; }
ParamSpec& ParamSpec::allow_empty() { optional_empty = true; return *this; }
ParamSpec& ParamSpec::accept_booleans() { booleans_as_choices = true; return *this; }

namespace {
std::string number_text(double value) {
  if (std::abs(value) < 1e15 && value == std::floor(value)) return std::to_string(static_cast<long long>(value));
  std::ostringstream out;
  out << value;
  return out.str();
}

std::string quoted_list(const std::vector<std::string>& items) {
  std::string text;
  for (std::size_t i = 0; i < items.size(); ++i) {
    if (i) text += ", ";
    text += '"' + items[i] + '"';
  }
  return text;
}

std::string show(const json& value) {
  if (value.is_string()) return "string " + clipped(value.dump());
  if (value.is_boolean()) return std::string("boolean ") + (value.get<bool>() ? "true" : "false");
  if (value.is_array()) return "array " + clipped(value.dump());
  if (value.is_object()) return "table";
  if (value.is_number_float()) {
    std::ostringstream out;
    out << "float " << value.get<double>();
    return out.str();
  }
  return clipped(value.dump());
}

// "" when inside the range, else e.g. "must be > 0".
std::string range_complaint(const ParamSpec& spec, double value) {
  const bool below = spec.min && (spec.min_exclusive ? value <= *spec.min : value < *spec.min);
  const bool above = spec.max && (spec.max_exclusive ? value >= *spec.max : value > *spec.max);
  if (!below && !above) return {};
  // A number's range is named whole ("> 0 and <= 1"); an integer's by the bound it crossed, so the
  // int32 backstop every integer has appears only when a value passes it.
  if (spec.min && spec.max && spec.type != ParamType::Int) {
    const std::string low = spec.min_exclusive ? "> " : ">= ";
    const std::string high = spec.max_exclusive ? "< " : "<= ";
    return "must be " + low + number_text(*spec.min) + " and " + high + number_text(*spec.max);
  }
  if (below) return std::string("must be ") + (spec.min_exclusive ? "> " : ">= ") + number_text(*spec.min);
  return std::string("must be ") + (spec.max_exclusive ? "< " : "<= ") + number_text(*spec.max);
}
}  // namespace

std::string ParamSpec::type_name() const {
  switch (type) {
    case ParamType::Bool: return "a boolean (true or false)";
    case ParamType::Int: return "an integer";
    case ParamType::Float: return "a number";
    case ParamType::String: return "a string";
    case ParamType::Choice: return "one of " + quoted_list(choices) + (booleans_as_choices ? " or a boolean" : "");
    case ParamType::Path: return "a path (string)";
    case ParamType::PathList: return "a list of paths (strings)";
    case ParamType::StringList:
      return length ? "a list of " + std::to_string(*length) + " strings" : "a list of strings";
    case ParamType::FloatList:
      return length ? "a list of " + std::to_string(*length) + " numbers" : "a list of numbers";
  }
  return "a value";
}

std::string check_param_value(const ParamSpec& spec, const json& value, json* canonical) {
  const auto wrong_type = [&] { return "must be " + spec.type_name() + " (got " + show(value) + ")"; };
  switch (spec.type) {
    case ParamType::Bool:
      if (!value.is_boolean()) return wrong_type();
      *canonical = value;
      return {};
    case ParamType::Int: {
      if (!value.is_number_integer()) return wrong_type();
      const auto v = value.get<long long>();
      if (auto c = range_complaint(spec, static_cast<double>(v)); !c.empty()) {
        return c + " (got " + std::to_string(v) + ")";
      }
      *canonical = v;
      return {};
    }
    case ParamType::Float: {
      if (!value.is_number()) return wrong_type();
      const double v = value.get<double>();
      if (!std::isfinite(v)) return "must be a finite number (got " + value.dump() + ")";
      if (auto c = range_complaint(spec, v); !c.empty()) return c + " (got " + number_text(v) + ")";
      *canonical = v;  // always a JSON float: `1` and `1.0` canonicalise alike
      return {};
    }
    case ParamType::String:
    case ParamType::Path:
      if (!value.is_string()) return wrong_type();
      if (spec.type == ParamType::Path && value.get<std::string>().empty() && !spec.optional_empty) {
        return "must be a non-empty path";
      }
      *canonical = value;
      return {};
    case ParamType::Choice: {
      // A boolean is read as the choice of that name, so `true` and "true" give one cache key.
      const json text = spec.booleans_as_choices && value.is_boolean() ? json(value.get<bool>() ? "true" : "false") : value;
      if (!text.is_string()) return wrong_type();
      const auto v = text.get<std::string>();
      for (const auto& c : spec.choices) {
        if (c == v) {
          *canonical = text;
          return {};
        }
      }
      const std::string near = v.size() <= 80 ? closest_match(v, spec.choices) : "";
      return "must be one of " + quoted_list(spec.choices) + " (got \"" + clipped(v) + "\"" +
             (near.empty() ? "" : "; did you mean \"" + near + "\"?") + ")";
    }
    case ParamType::StringList:
    case ParamType::PathList: {
      if (!value.is_array()) return wrong_type();
      for (const auto& item : value) {
        if (!item.is_string()) return wrong_type();
      }
      if (spec.length && value.size() != *spec.length) return wrong_type();
      *canonical = value;
      return {};
    }
    case ParamType::FloatList: {
      if (!value.is_array()) return wrong_type();
      json out = json::array();
      for (const auto& item : value) {
        if (!item.is_number()) return wrong_type();
        const double v = item.get<double>();
        if (auto c = range_complaint(spec, v); !c.empty()) {
          return "elements " + c + " (got " + number_text(v) + ")";
        }
        out.push_back(v);
      }
      if (spec.length && value.size() != *spec.length) return wrong_type();
      *canonical = out;
      return {};
    }
  }
  return wrong_type();
}

const ParamSpec* find_param(const std::vector<ParamSpec>& specs, const std::string& name) {
  for (const auto& s : specs) {
    if (s.name == name) return &s;
  }
  return nullptr;
}

}  // namespace petal
