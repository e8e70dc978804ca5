// Turns P(Parasitized) into what a person acts on: a label, a confidence, and a decision that is
// "Inconclusive" inside a band around the threshold, where a microscopist should look.
#pragma once

#include <string>

#include "model/model_info.h"

namespace malaria {

inline constexpr const char* kInconclusive = "Inconclusive";

struct CellDecision {
  std::string label;      // Parasitized or Uninfected: the side of the threshold
  double confidence = 0;  // probability of that label
  std::string decision;   // label, or Inconclusive inside the point's band
};

CellDecision decide(double probability_parasitized, const OperatingPoint& point);

}  // namespace malaria
