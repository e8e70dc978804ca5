#include "eval/decision.h"

#include "data/dataset.h"
#include "eval/cell_check.h"

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

CellDecision decide_cell(const CellCheck& check, double p, float atypicality,
                         const OperatingPoint& point) {
  CellDecision d;
  if (!check.ok || !(atypicality <= 1.0f)) {  // NaN is refused too
    d.decision = kRejected;
    d.reason = check.ok ? kAtypicalReason : check.reason;
    d.whole_field = check.whole_field;
    return d;
  }
  return decide(p, point);
}

}  // namespace malaria
