#include "pipeline/schedule/cron_expression.h"

#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <sstream>
#include <vector>

#include "pipeline/util/error.h"

namespace petal {

namespace {

struct FieldSpec {
  const char* name;
  int low, high;
  std::vector<std::string> names;  // names[i] stands for low + i
};

const FieldSpec kFields[] = {
    {"minute", 0, 59, {}},
    {"hour", 0, 23, {}},
    {"day-of-month", 1, 31, {}},
    {"month", 1, 12, {"jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"}},
    {"day-of-week", 0, 7, {"sun", "mon", "tue", "wed", "thu", "fri", "sat"}},
};

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

[[noreturn]] void fail(const std::string& text, const std::string& why) {
  throw PetalError("--cron \"" + text + "\": " + why +
                       " (5 fields: minute hour day-of-month month day-of-week, e.g. \"0 3 * * *\" for 03:00 daily)",
                   {}, kExitUsage);
}

int value_of(const std::string& token, const FieldSpec& field, const std::string& text) {
  const std::string t = lower(token);
  for (std::size_t i = 0; i < field.names.size(); ++i) {
    if (t == field.names[i]) return field.low + static_cast<int>(i);
  }
  if (t.empty() || t.find_first_not_of("0123456789") != std::string::npos) {
    fail(text, std::string(field.name) + " \"" + token + "\" is not a number" +
                   (field.names.empty() ? "" : " or a name (" + field.names.front() + "...)"));
  }
  const int value = std::atoi(t.c_str());
  if (value < field.low || value > field.high) {
    fail(text, std::string(field.name) + " " + token + " is out of range (" + std::to_string(field.low) + "-" +
                   std::to_string(field.high) + ")");
  }
  return value;
}

// Sets the bits of one field; returns false when it was `*` (or `*/1`).
template <std::size_t N>
bool parse_field(const std::string& field_text, const FieldSpec& field, const std::string& text, std::bitset<N>& bits,
                 int offset) {
  bool unrestricted = false;
  std::stringstream parts(field_text);
  for (std::string part; std::getline(parts, part, ',');) {
    if (part.empty()) fail(text, std::string("empty item in ") + field.name + " \"" + field_text + "\"");
    int step = 1;
    if (const auto slash = part.find('/'); slash != std::string::npos) {
      const std::string step_text = part.substr(slash + 1);
      if (step_text.empty() || step_text.find_first_not_of("0123456789") != std::string::npos || std::atoi(step_text.c_str()) < 1) {
        fail(text, std::string(field.name) + " step \"" + step_text + "\" must be a whole number >= 1");
      }
      step = std::atoi(step_text.c_str());
      part = part.substr(0, slash);
    }
    int first = field.low, last = field.high;
    if (part == "*") {
      if (step == 1) unrestricted = true;
    } else if (const auto dash = part.find('-'); dash != std::string::npos) {
      first = value_of(part.substr(0, dash), field, text);
      last = value_of(part.substr(dash + 1), field, text);
      if (first > last) fail(text, std::string(field.name) + " range \"" + part + "\" runs backwards");
    } else {
      first = value_of(part, field, text);
      // "5/15" means from 5 to the end in steps of 15, as in Vixie cron.
      last = step > 1 ? field.high : first;
    }
    for (int v = first; v <= last; v += step) bits.set(static_cast<std::size_t>(v - offset));
  }
  return !unrestricted;
}

// TZ is process-wide: conversions in a zone swap it under this lock and put it back.
std::mutex g_tz_mutex;

class ScopedTimeZone {
 public:
  explicit ScopedTimeZone(const std::string& zone) : lock_(g_tz_mutex), active_(!zone.empty()) {
    if (!active_) return;
    const char* old = std::getenv("TZ");
    had_ = old != nullptr;
    if (had_) old_ = old;
    setenv("TZ", zone.c_str(), 1);
    tzset();
  }
  ~ScopedTimeZone() {
    if (!active_) return;
    if (had_) {
      setenv("TZ", old_.c_str(), 1);
    } else {
      unsetenv("TZ");
    }
    tzset();
  }

 private:
  std::lock_guard<std::mutex> lock_;
  bool active_;
  bool had_ = false;
  std::string old_;
};

}  // namespace

CronExpression CronExpression::parse(const std::string& input) {
  static const std::pair<const char*, const char*> kMacros[] = {
      {"@yearly", "0 0 1 1 *"}, {"@annually", "0 0 1 1 *"}, {"@monthly", "0 0 1 * *"}, {"@weekly", "0 0 * * 0"},
      {"@daily", "0 0 * * *"},  {"@midnight", "0 0 * * *"}, {"@hourly", "0 * * * *"}};
  std::string text = input;
  for (const auto& [macro, expansion] : kMacros) {
    if (lower(input) == macro) text = expansion;
  }
  if (!text.empty() && text[0] == '@') fail(input, "unknown macro (use @yearly, @monthly, @weekly, @daily or @hourly)");
  std::vector<std::string> fields;
  std::istringstream in(text);
  for (std::string f; in >> f;) fields.push_back(f);
  if (fields.size() != 5) fail(input, "has " + std::to_string(fields.size()) + " fields, not 5");

  CronExpression cron;
  cron.text_ = input;
  parse_field(fields[0], kFields[0], input, cron.minutes_, 0);
  parse_field(fields[1], kFields[1], input, cron.hours_, 0);
  cron.any_day_ = !parse_field(fields[2], kFields[2], input, cron.days_, 0);
  parse_field(fields[3], kFields[3], input, cron.months_, 0);
  std::bitset<8> weekdays;
  cron.any_weekday_ = !parse_field(fields[4], kFields[4], input, weekdays, 0);
  for (int d = 0; d < 7; ++d) cron.weekdays_[static_cast<std::size_t>(d)] = weekdays[static_cast<std::size_t>(d)];
  if (weekdays[7]) cron.weekdays_.set(0);  // 7 is Sunday too
  return cron;
}

bool CronExpression::matches(const std::tm& t) const {
  if (!minutes_[static_cast<std::size_t>(t.tm_min)] || !hours_[static_cast<std::size_t>(t.tm_hour)] ||
      !months_[static_cast<std::size_t>(t.tm_mon + 1)]) {
    return false;
  }
  return day_matches(t);
}

bool CronExpression::day_matches(const std::tm& t) const {
  const bool day = days_[static_cast<std::size_t>(t.tm_mday)];
  const bool weekday = weekdays_[static_cast<std::size_t>(t.tm_wday)];
  if (any_day_ && any_weekday_) return true;
  if (any_day_) return weekday;
  if (any_weekday_) return day;
  return day || weekday;
}

std::optional<std::time_t> CronExpression::next_after(std::time_t after, const std::string& time_zone) const {
  ScopedTimeZone zone(time_zone);
  // Walk forward through UTC minutes, skipping whole hours and days that cannot match. Converting
  // each candidate instant to local time (never the reverse) is what makes DST safe: a local time
  // the clocks skip is never produced, and an instant always has exactly one local time.
  std::time_t t = after - (after % 60) + 60;
  const std::time_t limit = after + 5LL * 366 * 24 * 3600;
  while (t <= limit) {
    std::tm local{};
    localtime_r(&t, &local);
    if (!months_[static_cast<std::size_t>(local.tm_mon + 1)] || !day_matches(local)) {
      // To the next local midnight (at most a day; DST makes days 23-25 h, so step by the remainder).
      const std::time_t to_midnight = ((23 - local.tm_hour) * 60 + (59 - local.tm_min)) * 60 + 60 - local.tm_sec;
      t += std::max<std::time_t>(60, to_midnight);
      continue;
    }
    if (!hours_[static_cast<std::size_t>(local.tm_hour)]) {
      t += (60 - local.tm_min) * 60 - local.tm_sec;
      continue;
    }
    if (!minutes_[static_cast<std::size_t>(local.tm_min)]) {
      t += 60 - local.tm_sec;
      continue;
    }
    return t;
  }
  return std::nullopt;
}

std::tm local_time_in(std::time_t t, const std::string& time_zone) {
  ScopedTimeZone zone(time_zone);
  std::tm local{};
  localtime_r(&t, &local);
  return local;
}

std::string format_local_time(std::time_t t, const std::string& time_zone) {
  ScopedTimeZone zone(time_zone);
  std::tm local{};
  localtime_r(&t, &local);
  char text[64];
  std::strftime(text, sizeof text, "%Y-%m-%d %H:%M %Z", &local);
  return text;
}

void check_time_zone(const std::string& time_zone) {
  if (time_zone.empty() || time_zone == "UTC") return;
  const char* dir = std::getenv("TZDIR");
  const std::filesystem::path zoneinfo = dir && *dir ? dir : "/usr/share/zoneinfo";
  if (time_zone.find("..") != std::string::npos || !std::filesystem::is_regular_file(zoneinfo / time_zone)) {
    throw PetalError("--tz \"" + time_zone + "\" is not a time zone this machine knows (looked in " + zoneinfo.string() +
                         "); use an IANA name such as \"Europe/Berlin\" or \"UTC\" (Debian: apt-get install tzdata)",
                     {}, kExitUsage);
  }
}

}  // namespace petal
