#include "eval/decision.h"

#include "data/dataset.h"

namespace malaria {

CellDecision decide(double p, const OperatingPoint& point) {
  const bool parasitized = p >= point.threshold;
  CellDecision d;
  d.label = kClassNames[parasitized ? kParasitized : kUninfected];
  d.confidence = parasitized ? p : 1.0 - p;
  const bool inside = point.inconclusive_high > point.inconclusive_low &&
                      p >= point.inconclusive_low && p <= point.inconclusive_high;
  d.decision = inside ? kInconclusive : d.label;
  return d;
}

}  // namespace malaria
