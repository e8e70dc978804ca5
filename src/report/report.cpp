#include "report/report.h"

#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>

#include "data/image.h"
#include "eval/calibration.h"
#include "model/architecture.h"
#include "report/figures.h"
#include "util/files.h"
#include "util/text.h"

namespace malaria {

namespace fs = std::filesystem;
using json = nlohmann::json;

void write_evaluation_figures(const Classifier& model, const Evaluation& ev,
                              const std::string& dir) {
  fs::create_directories(dir);
  std::vector<int> labels;
  for (const auto& s : ev.samples) labels.push_back(s.label);
  plot_confusion_matrix(ev.metrics, dir + "/confusion_matrix.png");
  plot_roc(ev.probabilities, labels, ev.metrics, dir + "/roc.png");
  plot_precision_recall(ev.probabilities, labels, ev.metrics, dir + "/pr.png");
  plot_reliability(ev.probabilities, apply_temperature(ev.logits, 1.0), labels,
                   dir + "/reliability.png");
  draw_sample_grid(ev.samples, ev.probabilities, ev.metrics.threshold, 8,
                   dir + "/sample_images.png");
  // The first Parasitized cell: parasites make the maps worth looking at.
  for (const auto& s : ev.samples)
    if (s.label == kParasitized) {
      const cv::Mat cell = read_image(s.path);
      draw_feature_maps(
          cell, model.feature_maps(cell, 1),
          "First convolution layer activations: " + fs::path(s.path).filename().string(),
          dir + "/feature_maps.png");
      break;
    }
  draw_architecture(summarize_architecture(model.arch(), model.image_size()),
                    dir + "/architecture.png");
}

namespace {

json read_json(const std::string& path) {
  return fs::exists(path) ? json::parse(read_text(path)) : json();
}

// The member, or null when it is missing or `object` is not an object (a const json's operator[]
// would be undefined behaviour there).
const json& field(const json& object, const char* key) {
  static const json kNull;
  if (!object.is_object()) return kNull;
  const auto it = object.find(key);
  return it == object.end() ? kNull : *it;
}

std::string pct(const json& v) {
  if (!v.is_number()) return "-";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f%%", 100 * v.get<double>());
  return buf;
}

std::string num(const json& v, int digits = 4) {
  if (!v.is_number()) return v.is_null() ? "-" : html_escape(v.dump());
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.*f", digits, v.get<double>());
  return buf;
}

std::string figure(const std::string& dir, const std::string& name, const std::string& caption) {
  const std::string path = dir + "/figures/" + name;
  if (!fs::exists(path)) return "";
  return "<figure><img alt=\"" + html_escape(caption) + "\" src=\"data:image/png;base64," +
         base64_encode(read_text(path)) + "\"><figcaption>" + html_escape(caption) +
         "</figcaption></figure>\n";
}

std::string kv_table(const json& obj) {
  std::ostringstream out;
  out << "<table class=\"kv\">";
  for (const auto& [k, v] : obj.items())
    out << "<tr><th>" << html_escape(k) << "</th><td>"
        << html_escape(v.is_string() ? v.get<std::string>() : v.dump()) << "</td></tr>";
  out << "</table>\n";
  return out.str();
}

std::string report_head(const std::string& dir, const json& config) {
  std::ostringstream h;
  h << "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Training report: "
    << html_escape(fs::path(dir).filename().string()) << "</title><style>"
    << "body{font:15px/1.5 "
       "system-ui,sans-serif;max-width:1100px;margin:auto;padding:1.5rem;color:#1d2433}"
    << "h1{color:#8a2b5e}h2{border-bottom:1px solid #dcdfe6;padding-bottom:.2rem;margin-top:2rem}"
    << "table{border-collapse:collapse;margin:.5rem 0}th,td{border-bottom:1px solid "
       "#e3e5ea;padding:.25rem .6rem;"
    << "text-align:left}td.n{text-align:right;font-variant-numeric:tabular-nums}table.kv "
       "th{color:#5b6475;"
    << "font-weight:normal}figure{display:inline-block;margin:.5rem}img{max-width:100%;border:1px "
       "solid #e3e5ea}"
    << "figcaption{color:#5b6475;font-size:.9rem}pre{background:#f6f7f9;padding:.75rem;overflow-x:"
       "auto}"
    << ".metrics td{font-size:1.1rem}</style></head><body>\n";
  h << "<h1>Training report: " << html_escape(fs::path(dir).filename().string()) << "</h1>\n"
    << "<p>Architecture <b>" << html_escape(config.value("arch", "")) << "</b> at "
    << config.value("image_size", 0) << "&times;" << config.value("image_size", 0) << ", written "
    << now_iso8601() << " by malaria " << MALARIA_VERSION
    << ". The model assists and does not replace a trained microscopist.</p>\n";

  return h.str();
}

std::string test_section(const std::string& dir, const json& test, const std::string& txt) {
  std::ostringstream h;
  h << "<h2>Test metrics (patients never seen in training)</h2>\n";
  if (test.is_object()) {
    h << "<table "
         "class=\"metrics\"><tr><th>accuracy</th><th>sensitivity</th><th>specificity</"
         "th><th>precision</th>"
      << "<th>F1</th><th>ROC AUC</th><th>loss</th><th>images</th></tr><tr>"
      << "<td class=n>" << pct(field(test, "accuracy")) << "</td><td class=n>"
      << pct(field(test, "recall")) << "</td><td class=n>" << pct(field(test, "specificity"))
      << "</td><td class=n>" << pct(field(test, "precision")) << "</td><td class=n>"
      << num(field(test, "f1")) << "</td><td class=n>" << num(field(test, "roc_auc"))
      << "</td><td class=n>" << num(field(test, "loss")) << "</td><td class=n>"
      << test.value("images", 0) << "</td></tr></table>\n";
    h << figure(dir, "confusion_matrix.png", "Confusion matrix of the test split")
      << figure(dir, "roc.png", "ROC curve with the operating point")
      << figure(dir, "pr.png", "Precision-recall curve")
      << figure(dir, "reliability.png", "Reliability diagram: calibrated and raw probabilities");
    const auto cr = txt.find("Classification report");
    const auto pp = txt.find("Per patient");
    if (cr != std::string::npos)
      h << "<h2>Classification report, calibration and operating points</h2><pre>"
        << html_escape(txt.substr(cr, pp == std::string::npos ? std::string::npos : pp - cr))
        << "</pre>\n";
  } else {
    h << "<p>No test split was evaluated.</p>\n";
  }

  return h.str();
}

std::string history_section(const std::string& dir, const json& history) {
  std::ostringstream h;
  h << "<h2>Training history</h2>\n"
    << figure(dir, "training_history.png", "Accuracy and loss per epoch");
  if (history.is_array()) {
    h << "<table><tr><th>epoch</th><th>train loss</th><th>train acc</th><th>val loss</th><th>val "
         "acc</th>"
      << "<th>learning rate</th><th>seconds</th><th>images/s</th></tr>";
    for (const auto& r : history)
      h << "<tr><td class=n>" << field(r, "epoch") << "</td><td class=n>"
        << num(field(r, "train_loss")) << "</td><td class=n>" << num(field(r, "train_accuracy"))
        << "</td><td class=n>" << num(field(r, "val_loss")) << "</td><td class=n>"
        << num(field(r, "val_accuracy")) << "</td><td class=n>" << num(field(r, "learning_rate"), 6)
        << "</td><td class=n>" << num(field(r, "seconds"), 1) << "</td><td class=n>"
        << num(field(r, "images_per_second"), 0) << "</td></tr>";
    h << "</table>\n";
  }

  return h.str();
}

std::string data_section(const std::string& dir, const json& data) {
  std::ostringstream h;
  h << "<h2>Data and split</h2>\n";
  if (data.is_object()) {
    h << kv_table(data.value("dataset", json::object()));
    h << "<table><tr><th>split</th><th>images</th><th>Parasitized</th><th>Uninfected</"
         "th><th>patients</th></tr>";
    for (const char* part : {"train", "val", "test"}) {
      const json p = field(data, "split").value(part, json::object());
      h << "<tr><td>" << part << "</td><td class=n>" << p.value("images", 0) << "</td><td class=n>"
        << p.value("Parasitized", 0) << "</td><td class=n>" << p.value("Uninfected", 0)
        << "</td><td class=n>" << p.value("patients", 0) << "</td></tr>";
    }
    h << "</table><p>Split mode <b>" << html_escape(data.value("split_mode", "")) << "</b>, seed "
      << data.value("split_seed", 0) << "; the list of files per split is in split.csv.</p>\n";
  }
  h << figure(dir, "sample_images.png", "Sample test cells with the model's probability");

  return h.str();
}

std::string patients_section(const json& test) {
  std::ostringstream h;
  if (test.is_object() && test.contains("patients")) {
    h << "<h2>Per-patient results</h2><table><tr><th>patient</th><th>cells</th><th>accuracy</th>"
      << "<th>true parasitemia</th><th>predicted parasitemia</th></tr>";
    for (const auto& p : field(test, "patients"))
      h << "<tr><td>" << html_escape(p.value("patient", "")) << "</td><td class=n>"
        << p.value("cells", 0) << "</td><td class=n>" << pct(field(p, "accuracy"))
        << "</td><td class=n>" << pct(field(p, "true_parasitemia")) << "</td><td class=n>"
        << pct(field(p, "predicted_parasitemia")) << "</td></tr>";
    h << "</table>\n";
  }

  return h.str();
}

std::string model_section(const std::string& dir, const json& config) {
  std::ostringstream h;
  h << "<h2>Model</h2>\n"
    << figure(dir, "feature_maps.png",
              "Activations of the first convolution layer for one test cell")
    << figure(dir, "architecture.png", "The network, drawn from its definition");
  h << "<h2>Configuration</h2>\n" << kv_table(config) << "</body></html>\n";
  return h.str();
}

}  // namespace

std::string write_report(const std::string& dir) {
  if (!fs::exists(dir + "/config.json"))
    throw std::runtime_error(dir + " is not a training run folder (no config.json)");
  const json config = read_json(dir + "/config.json");
  const json data = read_json(dir + "/data_summary.json");
  const json history = read_json(dir + "/history.json");
  const json test = read_json(dir + "/evaluation.json");
  const std::string txt =
      fs::exists(dir + "/evaluation.txt") ? read_text(dir + "/evaluation.txt") : "";

  const std::string html = report_head(dir, config) + test_section(dir, test, txt) +
                           history_section(dir, history) + data_section(dir, data) +
                           patients_section(test) + model_section(dir, config);
  const std::string path = dir + "/report.html";
  write_text_atomic(path, html);
  return path;
}

}  // namespace malaria
