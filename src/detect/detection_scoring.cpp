#include "detect/detection_scoring.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace malaria {

double DetectionScore::recall() const {
  const size_t a = std::accumulate(annotated.begin(), annotated.end(), size_t(0));
  const size_t f = std::accumulate(found.begin(), found.end(), size_t(0));
  return a ? double(f) / a : 0;
}

double DetectionScore::precision() const {
  return detections ? 1 - double(unmatched) / detections : 0;
}

nlohmann::json DetectionScore::to_json() const {
  nlohmann::json per_class = nlohmann::json::object();
  for (int c = 0; c < kDetectorClasses; ++c)
    per_class[kDetectorClassNames[c]] = {
        {"annotated", annotated[c]},
        {"found", found[c]},
        {"recall", annotated[c] ? double(found[c]) / annotated[c] : 0.0}};
  size_t infected_annotated = 0, infected_found = 0;
  for (int c = 1; c < kDetectorClasses; ++c)
    infected_annotated += annotated[c], infected_found += found[c];
  std::vector<double> recalls;
  for (const auto& [name, r] : field_recall) recalls.push_back(r);
  nlohmann::json worst = nlohmann::json::array();
  for (size_t i = 0; i < std::min<size_t>(5, field_recall.size()); ++i)
    worst.push_back({{"field", field_recall[i].first}, {"recall", field_recall[i].second}});
  // Stage accuracy over matched infected cells that the detector also calls infected.
  size_t stage_right = 0, stage_total = 0;
  for (int a = 1; a < kDetectorClasses; ++a)
    for (int p = 1; p < kDetectorClasses; ++p) {
      stage_total += confusion[a][p];
      stage_right += a == p ? confusion[a][p] : 0;
    }
  return {
      {"threshold", threshold},
      {"recall", recall()},
      {"recall_uninfected", annotated[0] ? double(found[0]) / annotated[0] : 0.0},
      {"recall_infected", infected_annotated ? double(infected_found) / infected_annotated : 0.0},
      {"precision", precision()},
      {"detections", detections},
      {"per_class", per_class},
      {"class_confusion", confusion},
      {"stage_accuracy", stage_total ? double(stage_right) / stage_total : 0.0},
      {"field_recall_min", recalls.empty() ? 0.0 : recalls.front()},
      {"field_recall_p5",
       recalls.empty() ? 0.0 : recalls[size_t(std::floor(0.05 * (recalls.size() - 1)))]},
      {"worst_fields", worst}};
}

DetectionScore score_detections(const std::vector<AnnotatedField>& fields,
                                const std::vector<std::vector<DetectedCell>>& detections,
                                float threshold) {
  DetectionScore score;
  score.threshold = threshold;
  for (size_t f = 0; f < fields.size(); ++f) {
    std::vector<cv::Rect> boxes;
    std::vector<const DetectedCell*> kept;
    for (const auto& d : detections[f])
      if (d.score >= threshold) boxes.push_back(d.box), kept.push_back(&d);
    const auto match = match_annotations(boxes, fields[f].cells);
    std::vector<bool> used(boxes.size(), false);
    size_t annotated = 0, found = 0;
    for (size_t a = 0; a < fields[f].cells.size(); ++a) {
      const int c = detector_class_of(fields[f].cells[a].type);
      if (match[a] >= 0) used[match[a]] = true;
      if (c < 0) continue;
      ++score.annotated[c], ++annotated;
      if (match[a] < 0) continue;
      ++score.found[c], ++found;
      const auto& p = kept[match[a]]->class_probabilities;
      ++score.confusion[c][std::max_element(p.begin(), p.end()) - p.begin()];
    }
    score.detections += boxes.size();
    // A detection is held against precision only when it touches no annotated cell at all
    // (match_annotations gives each annotation one detection; a neighbour may claim another).
    for (size_t d = 0; d < boxes.size(); ++d) {
      if (used[d]) continue;
      bool touches = false;
      for (const auto& cell : fields[f].cells)
        touches |= intersection_over_union(boxes[d], cell.box) >= 0.3;
      score.unmatched += !touches;
    }
    score.field_recall.emplace_back(fields[f].name, annotated ? double(found) / annotated : 1.0);
  }
  std::sort(score.field_recall.begin(), score.field_recall.end(),
            [](const auto& a, const auto& b) { return a.second < b.second; });
  return score;
}

float choose_score_threshold(const std::vector<AnnotatedField>& fields,
                             const std::vector<std::vector<DetectedCell>>& detections) {
  float best = 0.3f;
  double best_f2 = -1;
  for (float t = 0.05f; t < 0.901f; t += 0.025f) {
    const DetectionScore s = score_detections(fields, detections, t);
    const double r = s.recall(), p = s.precision();
    const double f2 = r + p > 0 ? 5 * p * r / (4 * p + r) : 0;
    if (f2 > best_f2) best_f2 = f2, best = t;
  }
  return best;
}

}  // namespace malaria
