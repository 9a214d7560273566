#include "stages/split/split_assign.h"

#include <algorithm>
#include <cmath>
#include <set>

namespace petal {

namespace {

class SplitMix64 {
 public:
  explicit SplitMix64(std::uint64_t seed) : state_(seed) {}
  std::uint64_t next() {
    std::uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  std::uint64_t below(std::uint64_t bound) {  // unbiased, by rejection
    const std::uint64_t limit = UINT64_MAX - UINT64_MAX % bound;
    std::uint64_t value;
    do value = next(); while (value >= limit);
    return value % bound;
  }

 private:
  std::uint64_t state_;
};

}  // namespace

DuplicateReport resolve_duplicates(std::vector<SplitItem>& items, const std::string& policy) {
  std::map<std::string, std::vector<SplitItem*>> by_digest;
  for (auto& item : items) {
    if (item.excluded.empty() && !item.sha256.empty()) by_digest[item.sha256].push_back(&item);
  }
  DuplicateReport report;
  for (auto& [digest, group] : by_digest) {
    if (group.size() < 2) continue;
    std::sort(group.begin(), group.end(), [](const SplitItem* a, const SplitItem* b) { return a->path < b->path; });
    std::vector<std::string> paths;
    std::set<std::string> labels, splits;
    for (const auto* item : group) {
      paths.push_back(item->path);
      labels.insert(item->label);
      splits.insert(item->split);
    }
    if (labels.size() == 1) {
      report.groups.push_back(paths);
      if (splits.size() > 1 && !splits.count("")) ++report.cross_split;
      continue;
    }
    report.conflicts.push_back(paths);
    for (std::size_t i = 0; i < group.size(); ++i) {
      if (policy == "keep-first" && i == 0) continue;
      group[i]->excluded = policy == "keep-first" ? "duplicate of " + group[0]->path + " under another label"
                                                  : "identical images carry different labels";
    }
  }
  return report;
}

void assign_stratified(std::vector<SplitItem>& items, const std::vector<double>& ratios, std::uint64_t seed,
                       bool stratify) {
  // Units: sets of identical images (they must share a split), grouped by class.
  std::map<std::string, std::map<std::string, std::vector<SplitItem*>>> units;  // class -> digest -> items
  for (auto& item : items) {
    if (!item.excluded.empty()) continue;
    units[stratify ? item.label : std::string()][item.sha256.empty() ? item.path : item.sha256].push_back(&item);
  }
  SplitMix64 random(seed);
  for (auto& [group, by_digest] : units) {
    std::vector<std::vector<SplitItem*>*> order;
    std::size_t n = 0;
    for (auto& [digest, members] : by_digest) {
      order.push_back(&members);
      n += members.size();
    }
    for (std::size_t i = order.size(); i > 1; --i) std::swap(order[i - 1], order[random.below(i)]);
    const std::size_t n_val = static_cast<std::size_t>(std::llround(static_cast<double>(n) * ratios[1]));
    const std::size_t n_test = std::min(n - n_val, static_cast<std::size_t>(std::llround(static_cast<double>(n) * ratios[2])));
    std::size_t val = 0, test = 0;
    for (auto* members : order) {
      const char* split = "train";
      if (val < n_val) {
        split = "val";
        val += members->size();
      } else if (test < n_test) {
        split = "test";
        test += members->size();
      }
      for (auto* item : *members) item->split = split;
    }
  }
}

}  // namespace petal
