// `malaria evaluate-fields`: how well screening finds, classifies and counts cells on annotated
// smear fields. Torch-free header.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

namespace malaria {

class Classifier;
struct FieldSegmenter;

struct FieldEvaluationOptions {
  std::string split_csv;            // a run's split.csv: only the field groups of one part
  std::string split_part = "test";  // that part: "test", or "val" to measure error rates
  // With model_path: write a copy of that field model file here with the error rates measured
  // ("field_error_rates"), which screening then corrects its counts with.
  std::string model_path, write_model;
  std::string out_dir;   // evaluation.json, evaluation.txt, report.html, figures/; "" for none
  int worst_fields = 4;  // overlays of the fields with the largest parasitemia error
  bool progress = true;
  std::string operating_point;  // empty: the field model's (see field_operating_point)
};

struct FieldEvaluation {
  nlohmann::json result;  // everything (see to_text for the headline figures)
  std::string to_text() const;
};

// Detection recall per class (a detection matches an annotated box at IoU >= 0.3 or when its
// centre lies inside), merged detections (one region holding the centres of two or more
// annotated cells), cell-level AUC and sensitivity at 99% and 99.5% specificity on matched cells
// not cut by the edge, parasitemia per field and per group against the annotation (mean absolute
// error, correlation), and the time per field. options.operating_point decides.
// Recall per field (its minimum and 5th percentile, worst fields named), each field's quality
// verdict (failed fields are left out of the group figures, as screening leaves them out), the
// share of groups within +-25% of the annotated parasitemia, and the stage confusion over
// matched annotated infected cells (annotated stage against the detector's likeliest).
FieldEvaluation evaluate_fields(const Classifier& classifier, const FieldSegmenter& segmenter,
                                const std::string& fields_dir,
                                const FieldEvaluationOptions& options);

}  // namespace malaria
