#include "eval/decision.h"

#include <cmath>

#include "data/dataset.h"

namespace malaria {

CellDecision decide(double p, double threshold, double band) {
  const bool parasitized = p >= threshold;
  CellDecision d;
  d.label = kClassNames[parasitized ? kParasitized : kUninfected];
  d.confidence = parasitized ? p : 1.0 - p;
  d.decision = std::abs(p - threshold) < band ? kInconclusive : d.label;
  return d;
}

}  // namespace malaria
