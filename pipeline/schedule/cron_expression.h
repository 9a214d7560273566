#pragma once
// Standard 5-field cron syntax (minute hour day-of-month month day-of-week), as crontab(5) defines
// it: `*`, lists `1,15`, ranges `1-5`, steps `*/15` and `10-40/10`, month and weekday names
// (`jan`, `mon-fri`), 7 as Sunday, and the macros @yearly @annually @monthly @weekly @daily
// @midnight @hourly. When both day fields are restricted a day matches if either does (cron's rule).
#include <bitset>
#include <ctime>
#include <optional>
#include <string>

namespace petal {

class CronExpression {
 public:
  // Throws PetalError naming the field and what is accepted, e.g.
  // `--cron "0 25 * * *": hour 25 is out of range (0-23)`.
  static CronExpression parse(const std::string& text);

  // Whether a local civil time (seconds ignored) matches.
  bool matches(const std::tm& local) const;
  // The first whole minute strictly after `after` whose wall-clock time in `time_zone` (an IANA
  // name such as "Europe/Berlin"; empty: the process's TZ) matches. Local times skipped by a DST
  // change never fire; nullopt when none matches within 5 years (e.g. "0 0 30 2 *").
  std::optional<std::time_t> next_after(std::time_t after, const std::string& time_zone) const;
  const std::string& text() const { return text_; }

 private:
  bool day_matches(const std::tm& local) const;  // day-of-month and day-of-week, with cron's either-rule

  std::string text_;
  std::bitset<60> minutes_;
  std::bitset<24> hours_;
  std::bitset<32> days_;     // 1-31
  std::bitset<13> months_;   // 1-12
  std::bitset<7> weekdays_;  // 0 = Sunday
  bool any_day_ = true;      // day-of-month was `*`
  bool any_weekday_ = true;  // day-of-week was `*`
};

// The local civil time of `t` in `time_zone` (empty: the process's TZ).
std::tm local_time_in(std::time_t t, const std::string& time_zone);
// "2026-11-23 03:00 CET"
std::string format_local_time(std::time_t t, const std::string& time_zone);
// Throws PetalError when `time_zone` is not a zone this machine knows (looked up in the tz database).
void check_time_zone(const std::string& time_zone);

}  // namespace petal
