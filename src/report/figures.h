// Figures people read before trusting a model. Plots are drawn by gnuplot (axes, legends, heat
// map), the architecture by Graphviz, image grids by OpenCV. Each plot also writes the numbers it
// shows to a CSV beside the PNG, so a figure can always be checked against the metrics.
#pragma once

#include <nlohmann/json.hpp>
#include <opencv2/core.hpp>
#include <string>
#include <vector>

#include "data/dataset.h"
#include "eval/metrics.h"
#include "model/architecture.h"

namespace malaria {

// history: the array written to history.json; best_epoch is marked (1-based, 0: none).
void plot_training_history(const nlohmann::json& history, int best_epoch, const std::string& png);
// The detector's training: heat-map, class and size losses per 50 steps (history.json rows).
void plot_detector_history(const nlohmann::json& history, const std::string& png);
void plot_confusion_matrix(const Metrics& metrics, const std::string& png);
void plot_roc(const std::vector<float>& probabilities, const std::vector<int>& labels,
              const Metrics& metrics, const std::string& png);
void plot_precision_recall(const std::vector<float>& probabilities, const std::vector<int>& labels,
                           const Metrics& metrics, const std::string& png);
// Reliability diagram: share of Parasitized cells against mean P(Parasitized) in 15 bins, for
// the calibrated probabilities and the raw ones, with both ECEs in the legend.
void plot_reliability(const std::vector<float>& calibrated, const std::vector<float>& uncalibrated,
                      const std::vector<int>& labels, const std::string& png);
// A labelled grid of up to `per_class` cells of each class; with probabilities, each caption
// shows P(Parasitized) too.
void draw_sample_grid(const std::vector<Sample>& samples, const std::vector<float>& probabilities,
                      double threshold, int per_class, const std::string& png);
// Up to `limit` images in a grid of `columns`, each with its two caption lines (red when
// `flagged`): the cells a person should look at, e.g. suspected label errors.
struct ContactSheetItem {
  std::string path, caption, detail;
  bool flagged = false;
};
void draw_contact_sheet(const std::vector<ContactSheetItem>& items, int columns,
                        const std::string& title, const std::string& png);
// Measured against annotated parasitemia (percent), one point per group of fields, with the
// identity line and the +/- `tolerance` points band.
void plot_parasitemia(const std::vector<double>& annotated, const std::vector<double>& measured,
                      double tolerance, const std::string& png);
void draw_architecture(const ArchitectureSummary& summary, const std::string& png);
// The input cell and one panel per channel of a layer's activations.
void draw_feature_maps(const cv::Mat& input_bgr, const std::vector<cv::Mat>& maps,
                       const std::string& title, const std::string& png);

}  // namespace malaria
