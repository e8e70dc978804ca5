// Parasitemia: the share of red cells that are infected, with its 95% interval. Torch-free.
#pragma once

#include <cstddef>
#include <nlohmann/json.hpp>

namespace malaria {

struct Interval {
  double low = 0, high = 1;
};
// Wilson score interval for k successes in n trials (z = 1.96: 95%); [0, 1] when n is 0. Unlike
// the normal approximation it stays inside [0, 1] and is honest at k = 0, the common case here.
Interval wilson_interval(size_t k, size_t n, double z = 1.959963984540054);

struct ParasitemiaSummary {
  size_t cells = 0;         // red cells counted (cells cut by the image edge are not)
  size_t parasitized = 0;   // cells on the Parasitized side of the threshold
  size_t inconclusive = 0;  // cells in the Inconclusive band (either side): for a microscopist
  size_t excluded = 0;      // candidates not counted: cut by the image edge
  double percent() const { return cells ? 100.0 * parasitized / cells : 0.0; }
  Interval interval() const { return wilson_interval(parasitized, cells); }
  ParasitemiaSummary& operator+=(const ParasitemiaSummary& other);
  // cells, parasitized, inconclusive, excluded, parasitemia_percent, ci_low, ci_high (percent)
  nlohmann::json to_json() const;
};

}  // namespace malaria
