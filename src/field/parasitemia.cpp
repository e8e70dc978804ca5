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
  staged = staged || other.staged;
  for (size_t i = 0; i < stages.size(); ++i) stages[i] += other.stages[i];
  return *this;
}

nlohmann::json ParasitemiaSummary::to_json() const {
  const Interval ci = interval();
  nlohmann::json out = {{"cells", cells},
                        {"parasitized", parasitized},
                        {"inconclusive", inconclusive},
                        {"excluded", excluded},
                        {"parasitemia_percent", percent()},
                        {"ci_low", 100.0 * ci.low},
                        {"ci_high", 100.0 * ci.high}};
  if (staged) {
    out["stages"] = {{"ring", stages[0]},
                     {"trophozoite", stages[1]},
                     {"schizont", stages[2]},
                     {"gametocyte", stages[3]}};
    out["gametocytes_present"] = stages[3] > 0;
  }
  return out;
}

nlohmann::json FieldErrorRates::to_json() const {
  return {{"uninfected_cells", uninfected_cells},
          {"false_calls", false_calls},
          {"infected_cells", infected_cells},
          {"true_calls", true_calls},
          {"false_positive_rate", false_positive_rate()},
          {"sensitivity", sensitivity()},
          {"measured_on", measured_on},
          {"segmenter", segmenter},
          {"operating_point", operating_point}};
}

std::optional<FieldErrorRates> FieldErrorRates::from_json(const nlohmann::json& metadata) {
  if (!metadata.is_object() || !metadata.contains("field_error_rates")) return std::nullopt;
  const auto& j = metadata["field_error_rates"];
  FieldErrorRates r;
  try {
    r.uninfected_cells = j.at("uninfected_cells").get<size_t>();
    r.false_calls = j.at("false_calls").get<size_t>();
    r.infected_cells = j.at("infected_cells").get<size_t>();
    r.true_calls = j.at("true_calls").get<size_t>();
    r.measured_on = j.value("measured_on", "");
    r.segmenter = j.at("segmenter").get<std::string>();
    r.operating_point = j.at("operating_point").get<std::string>();
  } catch (const std::exception&) {
    return std::nullopt;
  }
  // Rates that cannot correct anything (no cells, or calls no better than chance) are unusable.
  if (r.uninfected_cells == 0 || r.infected_cells == 0 || r.false_calls > r.uninfected_cells ||
      r.true_calls > r.infected_cells || r.sensitivity() <= r.false_positive_rate())
    return std::nullopt;
  return r;
}

nlohmann::json corrected_parasitemia(const ParasitemiaSummary& summary,
                                     const FieldErrorRates& rates, double rbc_per_ul,
                                     bool rbc_assumed) {
  // `crossed`: what a bound becomes where the rates' bounds leave nothing to correct with.
  auto correct = [](double observed, double fpr, double sens, double crossed) {
    return sens > fpr ? std::clamp((observed - fpr) / (sens - fpr), 0.0, 1.0) : crossed;
  };
  const double f = rates.false_positive_rate(), s = rates.sensitivity();
  const Interval f_ci = wilson_interval(rates.false_calls, rates.uninfected_cells);
  const Interval s_ci = wilson_interval(rates.true_calls, rates.infected_cells);
  const Interval observed = summary.interval();
  const double share = summary.cells ? double(summary.parasitized) / summary.cells : 0;
  const double p = correct(share, f, s, share);
  // Lowest: few observed, many false calls, high sensitivity; highest: the opposite. Where the
  // rates' bounds cross, the count says nothing within [0, 1].
  const double low = std::min(p, correct(observed.low, f_ci.high, s_ci.high, 0.0));
  const double high = std::max(p, correct(observed.high, f_ci.low, s_ci.low, 1.0));
  return {{"parasitemia_percent", 100 * p},
          {"ci_low", 100 * low},
          {"ci_high", 100 * high},
          {"false_positive_rate", f},
          {"sensitivity", s},
          {"method",
           "Rogan-Gladen correction for the field model's validation error rates; interval "
           "widened for their uncertainty"},
          {"parasites_per_ul",
           {{"value", p * rbc_per_ul},
            {"ci_low", low * rbc_per_ul},
            {"ci_high", high * rbc_per_ul},
            {"rbc_per_ul", rbc_per_ul},
            {"rbc_per_ul_assumed", rbc_assumed}}}};
}

}  // namespace malaria
