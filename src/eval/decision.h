// Turns P(Parasitized) into what a person acts on: a label, a confidence, and a decision that is
// "Inconclusive" inside a band around the threshold, where a microscopist should look.
#pragma once

#include <string>

#include "model/model_info.h"

namespace malaria {

inline constexpr const char* kInconclusive = "Inconclusive";
// Not a single stained red cell as the model knows them: no label is given at all.
inline constexpr const char* kRejected = "Rejected";

struct CellDecision {
  std::string label;      // Parasitized or Uninfected: the side of the threshold; empty if Rejected
  double confidence = 0;  // probability of that label
  std::string decision;   // label, Inconclusive inside the point's band, or Rejected
  std::string reason;     // why Rejected
  bool whole_field = false;  // Rejected as a whole smear field: screen it instead
  bool rejected() const { return decision == kRejected; }
};

CellDecision decide(double probability_parasitized, const OperatingPoint& point);

// The decision on one cell image: the cheap check's refusal first (made before the model ran),
// then the model's own (atypicality above 1: features unlike any training cell's), else decide().
struct CellCheck;
CellDecision decide_cell(const CellCheck& check, double probability_parasitized, float atypicality,
                         const OperatingPoint& point);

}  // namespace malaria
