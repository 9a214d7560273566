#pragma once
#include <cmath>
#include <cstdint>

namespace petal::augment {

// Deterministic random numbers for augmentation, shuffling and batch mixing.
//
// Invariant: every draw is a pure function of the seed it was built from, fixed by the code below
// (SplitMix64, 53-bit doubles, rejection sampling), never by std::random_device or std::
// distributions, whose output differs between standard libraries. Floating-point helpers that call
// libm (normal, log_uniform) are identical on every IEEE-754 platform with a correctly rounded
// log/cos; the integer and uniform draws are identical everywhere.

// SplitMix64's finaliser: a bijective 64-bit mix with good avalanche.
constexpr std::uint64_t mix64(std::uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// Order-sensitive combination: combine(a, b) != combine(b, a).
constexpr std::uint64_t combine(std::uint64_t hash, std::uint64_t value) {
  return mix64(hash ^ (mix64(value + 0x9e3779b97f4a7c15ULL) + 0x632be59bd9b4e019ULL + (hash << 6) + (hash >> 2)));
}

// Named independent streams, so that e.g. changing the rotation probability does not change which
// crop a sample gets: each augmentation op draws from its own stream.
enum class Stream : std::uint64_t {
  Shuffle = 1,
  Preview = 2,
  Mix = 3,
  OpBase = 100,  // + the op's index
};

// The seed of stream `stream` for sample `index` of epoch `epoch` under seed `seed`.
constexpr std::uint64_t stream_seed(std::uint64_t seed, std::uint64_t epoch, std::uint64_t index, std::uint64_t stream) {
  return combine(combine(combine(combine(0x7065746c61756731ULL /* "petlaug1" */, seed), epoch), index), stream);
}

class Rng {
 public:
  explicit constexpr Rng(std::uint64_t seed) : state_(seed) {}

  constexpr std::uint64_t next() {
    std::uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
    return mix64(z);
  }

  // Uniform in [0, 1): the top 53 bits scaled exactly.
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }
  double uniform(double low, double high) { return low + (high - low) * uniform(); }
  // true with probability p (p <= 0 never draws true, p >= 1 always does).
  bool chance(double p) { return uniform() < p; }

  // Uniform integer in [0, bound), unbiased by rejection; bound 0 gives 0.
  std::uint64_t below(std::uint64_t bound) {
    if (bound == 0) return 0;
    const std::uint64_t limit = UINT64_MAX - UINT64_MAX % bound;
    std::uint64_t value;
    do value = next();
    while (value >= limit);
    return value % bound;
  }

  // log-uniform in [low, high], both > 0 (aspect ratios).
  double log_uniform(double low, double high) { return std::exp(uniform(std::log(low), std::log(high))); }

  // Standard normal by Box-Muller (one value per call; the pair's second half is discarded so the
  // stream position never depends on call history).
  double normal() {
    const double u1 = 1.0 - uniform();  // (0, 1]
    const double u2 = uniform();
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
  }

 private:
  std::uint64_t state_;
};

}  // namespace petal::augment
