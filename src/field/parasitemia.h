// Parasitemia: the share of red cells that are infected, with its 95% interval. Torch-free.
#pragma once

#include <array>
#include <cstddef>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

namespace malaria {

struct Interval {
  double low = 0, high = 1;
};
// Wilson score interval for k successes in n trials (z = 1.96: 95%); [0, 1] when n is 0. Unlike
// the normal approximation it stays inside [0, 1] and is honest at k = 0, the common case here.
Interval wilson_interval(size_t k, size_t n, double z = 1.959963984540054);

// The life-cycle stages, in the order of every stage count, the detector's classes and the
// records.
inline const std::array<std::string, 4> kStageNames = {"ring", "trophozoite", "schizont",
                                                       "gametocyte"};
inline constexpr int kGametocyte = 3;

struct ParasitemiaSummary {
  size_t cells = 0;         // red cells counted (cells cut by the image edge are not)
  size_t parasitized = 0;   // cells on the Parasitized side of the threshold
  size_t inconclusive = 0;  // cells in the Inconclusive band (either side): for a microscopist
  size_t excluded = 0;      // candidates not counted: cut by the image edge
  // Parasitized cells per life-cycle stage (ring, trophozoite, schizont, gametocyte), when a
  // detector that tells stages found the cells (`staged`).
  bool staged = false;
  std::array<size_t, 4> stages{};
  double percent() const { return cells ? 100.0 * parasitized / cells : 0.0; }
  Interval interval() const { return wilson_interval(parasitized, cells); }
  ParasitemiaSummary& operator+=(const ParasitemiaSummary& other);
  // cells, parasitized, inconclusive, excluded, parasitemia_percent, ci_low, ci_high (percent),
  // and when staged: stages {ring, trophozoite, schizont, gametocyte}, gametocytes_present
  nlohmann::json to_json() const;
};

// How often screening's Parasitized calls are wrong, measured on validation fields with the
// whole pipeline (segmenter, classifier, operating point) and stored in the field model's file
// as "field_error_rates".
struct FieldErrorRates {
  size_t uninfected_cells = 0, false_calls = 0;  // counted cells on no infected cell; called
  size_t infected_cells = 0, true_calls = 0;     // annotated infected cells; called
  std::string measured_on;                       // which fields
  // The rates hold only for screening with this segmenter at this operating point.
  std::string segmenter, operating_point;
  double false_positive_rate() const {
    return uninfected_cells ? double(false_calls) / uninfected_cells : 0;
  }
  double sensitivity() const { return infected_cells ? double(true_calls) / infected_cells : 1; }
  nlohmann::json to_json() const;
  // nullopt when the metadata has no usable "field_error_rates".
  static std::optional<FieldErrorRates> from_json(const nlohmann::json& metadata);
};

// The count corrected for the known error rates (Rogan-Gladen: (observed - FPR) / (sensitivity
// - FPR), within [0, 1]), its interval widened for the uncertainty of both rates (the Wilson
// bounds of the observed share combined with the worst-case bounds of each rate), and parasites
// per microlitre for a red-cell count (`rbc_assumed`: the count is the default, not measured).
// {"parasitemia_percent", "ci_low", "ci_high", "false_positive_rate", "sensitivity", "method",
//  "parasites_per_ul": {"value", "ci_low", "ci_high", "rbc_per_ul", "rbc_per_ul_assumed"}}
nlohmann::json corrected_parasitemia(const ParasitemiaSummary& summary,
                                     const FieldErrorRates& rates, double rbc_per_ul,
                                     bool rbc_assumed);
inline constexpr double kDefaultRbcPerMicrolitre = 5e6;
// A slide's parasitemia over fewer cells than this is mostly counting noise: it is flagged.
inline constexpr size_t kSlideMinimumCells = 1000;

}  // namespace malaria
