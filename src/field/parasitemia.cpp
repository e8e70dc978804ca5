#include "field/parasitemia.h"

#include <algorithm>
#include <cmath>

namespace malaria {

Interval wilson_interval(size_t k, size_t n, double z) {
  if (n == 0) return {0.0, 1.0};
  const double nn = static_cast<double>(n), p = k / nn, z2 = z * z;
  const double centre = (p + z2 / (2 * nn)) / (1 + z2 / nn);
  const double half = z * std::sqrt(p * (1 - p) / nn + z2 / (4 * nn * nn)) / (1 + z2 / nn);
  return {std::max(0.0, centre - half), std::min(1.0, centre + half)};
}

ParasitemiaSummary& ParasitemiaSummary::operator+=(const ParasitemiaSummary& other) {
  cells += other.cells;
  parasitized += other.parasitized;
  inconclusive += other.inconclusive;
  excluded += other.excluded;
  return *this;
}

nlohmann::json ParasitemiaSummary::to_json() const {
  const Interval ci = interval();
  return {{"cells", cells},
          {"parasitized", parasitized},
          {"inconclusive", inconclusive},
          {"excluded", excluded},
          {"parasitemia_percent", percent()},
          {"ci_low", 100.0 * ci.low},
          {"ci_high", 100.0 * ci.high}};
}

}  // namespace malaria
