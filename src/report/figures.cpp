#include "report/figures.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <sstream>

#include "data/image.h"
#include "eval/calibration.h"
#include "util/files.h"
#include "util/text.h"

namespace malaria {

namespace fs = std::filesystem;

namespace {

std::string csv_path(const std::string& png) {
  return fs::path(png).replace_extension(".csv").string();
}

std::string quote(const std::string& path) {
  std::string out = "'";
  for (char c : path) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

// Runs a tool that writes to a temporary file, then moves the result into place.
void run_tool(const std::string& command_with_tmp_out, const std::string& tmp,
              const std::string& out, const std::string& what) {
  const std::string err = tmp + ".err";
  const int status = std::system((command_with_tmp_out + " 2>" + quote(err)).c_str());
  std::string message;
  if (fs::exists(err)) message = read_text(err), fs::remove(err);
  if (status != 0 || !fs::exists(tmp)) {
    std::error_code ignored;
    fs::remove(tmp, ignored);
    throw std::runtime_error("cannot draw " + what + ": " +
                             (message.empty() ? "tool failed" : message));
  }
  fs::rename(tmp, out);
}

// gnuplot script with a PNG terminal; `body` plots into it.
void gnuplot(const std::string& png, int width, int height, const std::string& body) {
  fs::create_directories(fs::path(png).parent_path());
  const std::string tmp = png + ".tmp-" + std::to_string(::getpid()) + ".png";
  const std::string script_path = png + ".gp";
  std::ostringstream script;
  script << "set terminal pngcairo size " << width << "," << height
         << " enhanced font 'DejaVu Sans,12'\n"
         << "set output " << quote(tmp) << "\n"
         << "set datafile separator ','\n"
         << "set key noautotitle\n"
         << body << "\nset output\n";
  write_text_atomic(script_path, script.str());
  try {
    run_tool("gnuplot " + quote(script_path), tmp, png, fs::path(png).filename().string());
  } catch (...) {
    fs::remove(script_path);
    throw;
  }
  fs::remove(script_path);
}

void write_csv(const std::string& path, const std::string& header,
               const std::vector<std::vector<double>>& rows) {
  std::ostringstream out;
  out << header << '\n';
  out.precision(8);
  for (const auto& r : rows) {
    for (size_t i = 0; i < r.size(); ++i) out << (i ? "," : "") << r[i];
    out << '\n';
  }
  write_text_atomic(path, out.str());
}

}  // namespace

void plot_training_history(const nlohmann::json& history, int best_epoch, const std::string& png) {
  std::vector<std::vector<double>> rows;
  for (const auto& r : history)
    rows.push_back({r.value("epoch", 0.0), r.value("train_accuracy", 0.0),
                    r.value("val_accuracy", 0.0), r.value("train_loss", 0.0),
                    r.value("val_loss", 0.0)});
  const std::string data = csv_path(png);
  write_csv(data, "epoch,train_accuracy,val_accuracy,train_loss,val_loss", rows);
  std::ostringstream gp;
  const std::string title = best_epoch > 0
                                ? "Training history (dashed line: best epoch, " +
                                      std::to_string(best_epoch) + ", whose weights are kept)"
                                : std::string("Training history");
  gp << "set multiplot layout 1,2 title '" << title << "' font ',14'\n"
     << "set grid\nset xlabel 'epoch'\nset key bottom right box opaque\nset xtics 1\n"
     << "if (" << rows.size() << " > 15) set xtics 5\n"
     << "set datafile columnheaders\n";
  auto best_line = [&]() {
    if (best_epoch <= 0) return std::string();
    std::ostringstream s;
    s << "set arrow 1 from " << best_epoch << ", graph 0 to " << best_epoch
      << ", graph 1 nohead dt 2 lw 1.5 lc rgb '#555555'\n";
    return s.str();
  };
  gp << "set title 'Accuracy'\nset ylabel 'accuracy'\n"
     << best_line() << "plot " << quote(data)
     << " using 1:2 with linespoints pt 7 ps 0.6 lw 2 lc rgb '#1f77b4' title 'train', "
     << "'' using 1:3 with linespoints pt 7 ps 0.6 lw 2 lc rgb '#d62728' title 'validation'\n"
     << "set key top right box opaque\n"
     << "set title 'Loss (binary cross-entropy)'\nset ylabel 'loss'\n"
     << best_line() << "plot " << quote(data)
     << " using 1:4 with linespoints pt 7 ps 0.6 lw 2 lc rgb '#1f77b4' title 'train', "
     << "'' using 1:5 with linespoints pt 7 ps 0.6 lw 2 lc rgb '#d62728' title 'validation'\n"
     << "unset multiplot";
  gnuplot(png, 1200, 500, gp.str());
}

void plot_detector_history(const nlohmann::json& history, const std::string& png) {
  std::vector<std::vector<double>> rows;
  for (const auto& r : history)
    rows.push_back({r.value("step", 0.0), r.value("heat_loss", 0.0), r.value("class_loss", 0.0),
                    r.value("size_loss", 0.0)});
  const std::string data = csv_path(png);
  write_csv(data, "step,heat_loss,class_loss,size_loss", rows);
  std::ostringstream gp;
  gp << "set title 'Detector training (mean per 50 steps)' font ',14'\nset grid\n"
     << "set xlabel 'step'\nset ylabel 'loss'\nset logscale y\nset key top right box opaque\n"
     << "set datafile columnheaders\nplot " << quote(data)
     << " using 1:2 with lines lw 2 lc rgb '#1f77b4' title 'heat map (focal)', "
     << "'' using 1:3 with lines lw 2 lc rgb '#d62728' title 'class (weighted CE)', "
     << "'' using 1:4 with lines lw 2 lc rgb '#2ca02c' title 'box size (L1)'\n";
  gnuplot(png, 900, 500, gp.str());
}

void plot_confusion_matrix(const Metrics& m, const std::string& png) {
  const auto& c = m.confusion;
  // Rows: true class (0 Uninfected, 1 Parasitized); columns: predicted.
  const double counts[2][2] = {{double(c.tn), double(c.fp)}, {double(c.fn), double(c.tp)}};
  std::vector<std::vector<double>> rows;
  std::ostringstream labels;
  for (int t = 0; t < 2; ++t) {
    const double row_total = counts[t][0] + counts[t][1];
    for (int p = 0; p < 2; ++p) {
      const double pct = row_total > 0 ? 100.0 * counts[t][p] / row_total : 0.0;
      rows.push_back({double(t), double(p), counts[t][p], pct});
      char text[64];
      std::snprintf(text, sizeof text, "%.0f\\n(%.1f%%)", counts[t][p], pct);
      labels << "set label \"" << text << "\" at " << p << "," << t
             << " center front font ',16' tc rgb " << (pct > 50 ? "'white'" : "'black'") << "\n";
    }
  }
  const std::string data = csv_path(png);
  write_csv(data, "true,predicted,count,row_percent", rows);
  std::ostringstream gp;
  char title[160];
  std::snprintf(title, sizeof title, "Confusion matrix (threshold %.2f, accuracy %.2f%%)",
                m.threshold, 100 * m.accuracy);
  gp << "set title '" << title << "' font ',14'\n"
     << "set xrange [-0.5:1.5]\nset yrange [1.5:-0.5]\nset size ratio 1\n"
     << "set xtics ('Uninfected' 0, 'Parasitized' 1) font ',12'\nset ytics ('Uninfected' 0, "
        "'Parasitized' 1) font ',12'\n"
     << "set xlabel 'Predicted class' font ',13'\nset ylabel 'True class' font ',13'\n"
     << "set cblabel 'row %'\nset cbrange [0:100]\n"
     << "set palette defined (0 '#f7fbff', 50 '#6baed6', 100 '#08306b')\n"
     << "unset key\nset tics scale 0\n"
     << labels.str() << "set datafile columnheaders\n"
     << "plot " << quote(data) << " using 2:1:4 with image";
  gnuplot(png, 720, 640, gp.str());
}

void plot_roc(const std::vector<float>& prob, const std::vector<int>& labels, const Metrics& m,
              const std::string& png) {
  std::vector<std::vector<double>> rows;
  for (const auto& p : roc_curve(prob, labels)) rows.push_back({p.x, p.y, p.threshold});
  const std::string data = csv_path(png);
  write_csv(data, "false_positive_rate,true_positive_rate,threshold", rows);
  const double fpr = 1 - m.specificity, tpr = m.recall;
  std::ostringstream gp;
  char title[128], point[160];
  std::snprintf(title, sizeof title, "ROC curve (AUC = %.4f)", m.roc_auc);
  std::snprintf(point, sizeof point, "threshold %.2f: sensitivity %.3f, specificity %.3f",
                m.threshold, tpr, m.specificity);
  gp << "set title '" << title << "' font ',14'\nset grid\nset size ratio 1\n"
     << "set xrange [0:1]\nset yrange [0:1.01]\n"
     << "set xlabel 'False positive rate (1 - specificity)'\nset ylabel 'True positive rate "
        "(sensitivity)'\n"
     << "set key center right box opaque\nset datafile columnheaders\n"
     << "set print $op\nprint 'x,y'\nprint '" << fpr << "," << tpr << "'\nunset print\n"
     << "plot " << quote(data) << " using 1:2 with lines lw 2.5 lc rgb '#1f77b4' title 'model', "
     << "x with lines dt 2 lc rgb '#999999' title 'chance', "
     << "$op using 1:2 with points pt 7 ps 1.8 lc rgb '#d62728' title '" << point << "'";
  gnuplot(png, 700, 700, gp.str());
}

void plot_precision_recall(const std::vector<float>& prob, const std::vector<int>& labels,
                           const Metrics& m, const std::string& png) {
  std::vector<std::vector<double>> rows;
  for (const auto& p : pr_curve(prob, labels)) rows.push_back({p.x, p.y, p.threshold});
  const std::string data = csv_path(png);
  write_csv(data, "recall,precision,threshold", rows);
  const double base_rate =
      labels.empty()
          ? 0
          : double(std::count(labels.begin(), labels.end(), kParasitized)) / labels.size();
  std::ostringstream gp;
  char point[160];
  std::snprintf(point, sizeof point, "threshold %.2f: recall %.3f, precision %.3f", m.threshold,
                m.recall, m.precision);
  char title[96];
  std::snprintf(title, sizeof title, "Precision-recall curve (F1 = %.4f)", m.f1);
  gp << "set title '" << title << "' font ',14'\nset grid\nset size ratio 1\n"
     << "set xrange [0:1]\nset yrange [0:1.01]\n"
     << "set xlabel 'Recall (sensitivity)'\nset ylabel 'Precision'\n"
     << "set key center left box opaque\nset datafile columnheaders\n"
     << "set print $op\nprint 'x,y'\nprint '" << m.recall << "," << m.precision
     << "'\nunset print\n"
     << "plot " << quote(data) << " using 1:2 with lines lw 2.5 lc rgb '#1f77b4' title 'model', "
     << base_rate << " with lines dt 2 lc rgb '#999999' title 'chance (prevalence)', "
     << "$op using 1:2 with points pt 7 ps 1.8 lc rgb '#d62728' title '" << point << "'";
  gnuplot(png, 700, 700, gp.str());
}

void plot_reliability(const std::vector<float>& calibrated, const std::vector<float>& uncalibrated,
                      const std::vector<int>& labels, const std::string& png) {
  const auto cal = reliability_bins(calibrated, labels, 15);
  const auto raw = reliability_bins(uncalibrated, labels, 15);
  std::vector<std::vector<double>> rows;
  for (size_t b = 0; b < cal.size(); ++b)
    rows.push_back({cal[b].low, cal[b].high, cal[b].mean_probability, cal[b].positive_rate,
                    double(cal[b].count), raw[b].mean_probability, raw[b].positive_rate,
                    double(raw[b].count)});
  const std::string data = csv_path(png);
  write_csv(data,
            "bin_low,bin_high,calibrated_mean_probability,calibrated_positive_rate,"
            "calibrated_count,raw_mean_probability,raw_positive_rate,raw_count",
            rows);
  char cal_title[96], raw_title[96];
  std::snprintf(cal_title, sizeof cal_title, "calibrated (ECE %.4f)",
                expected_calibration_error(calibrated, labels, 15));
  std::snprintf(raw_title, sizeof raw_title, "uncalibrated (ECE %.4f)",
                expected_calibration_error(uncalibrated, labels, 15));
  std::ostringstream gp;
  gp << "set title 'Reliability diagram (15 bins)' font ',14'\nset grid\nset size ratio 1\n"
     << "set xrange [0:1]\nset yrange [0:1.01]\n"
     << "set xlabel 'Mean predicted P(Parasitized)'\nset ylabel 'Share actually Parasitized'\n"
     << "set key top left box opaque\nset datafile columnheaders\n"
     << "plot x with lines dt 2 lc rgb '#999999' title 'perfect calibration', " << quote(data)
     << " using ($8 > 0 ? $6 : NaN):7 with linespoints lw 1.5 pt 6 ps 1.2 "
     << "lc rgb '#ff7f0e' title '" << raw_title << "', " << quote(data)
     << " using ($5 > 0 ? $3 : NaN):4 with linespoints lw 2.5 pt 7 ps 1.4 "
     << "lc rgb '#1f77b4' title '" << cal_title << "'";
  gnuplot(png, 700, 700, gp.str());
}

void plot_parasitemia(const std::vector<double>& annotated, const std::vector<double>& measured,
                      double tolerance, const std::string& png) {
  std::vector<std::vector<double>> rows;
  double top = 1;
  for (size_t i = 0; i < annotated.size(); ++i) {
    rows.push_back({annotated[i], measured[i]});
    top = std::max({top, annotated[i], measured[i]});
  }
  top *= 1.1;
  const std::string data = csv_path(png);
  write_csv(data, "annotated_percent,measured_percent", rows);
  std::ostringstream gp;
  gp << "set title 'Parasitemia per group of fields' font ',14'\nset grid\nset size ratio 1\n"
     << "set xrange [0:" << top << "]\nset yrange [0:" << top << "]\n"
     << "set xlabel 'Annotated parasitemia (%)'\nset ylabel 'Measured parasitemia (%)'\n"
     << "set key top left box opaque\nset datafile columnheaders\n"
     << "plot x with lines dt 2 lc rgb '#999999' title 'identity', "
     << "x + " << tolerance << " with lines dt 3 lc rgb '#bbbbbb' title '+/- " << tolerance
     << " points', x - " << tolerance << " with lines dt 3 lc rgb '#bbbbbb' notitle, "
     << quote(data) << " using 1:2 with points pt 7 ps 1.4 lc rgb '#1f77b4' title 'group'";
  gnuplot(png, 700, 700, gp.str());
}

namespace {
void put_text(cv::Mat& img, const std::string& text, cv::Point at, double scale,
              const cv::Scalar& color, int thickness = 1) {
  cv::putText(img, text, at, cv::FONT_HERSHEY_SIMPLEX, scale, color, thickness, cv::LINE_AA);
}
void write_png_atomic(const std::string& png, const cv::Mat& img) {
  fs::create_directories(fs::path(png).parent_path());
  write_file_atomic(png, [&](const std::string& tmp) {
    std::vector<uint8_t> bytes;
    if (!cv::imencode(".png", img, bytes)) throw std::runtime_error("cannot encode " + png);
    std::ofstream(tmp, std::ios::binary)
        .write(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  });
}
}  // namespace

void draw_sample_grid(const std::vector<Sample>& samples, const std::vector<float>& prob,
                      double threshold, int per_class, const std::string& png) {
  constexpr int kCell = 128, kCaption = 44, kPad = 10, kHeader = 40;
  const int cols = per_class;
  cv::Mat canvas(kHeader + 2 * (kCell + kCaption + kPad) + kPad, kPad + cols * (kCell + kPad),
                 CV_8UC3, cv::Scalar(255, 255, 255));
  put_text(canvas, prob.empty() ? "Sample cells" : "Sample cells with the model's P(Parasitized)",
           {kPad, 28}, 0.8, {40, 40, 40}, 2);
  std::ostringstream csv;
  csv << "row,column,path,label,probability_parasitized\n";
  for (int row = 0; row < 2; ++row) {
    const int label = row == 0 ? kParasitized : kUninfected;
    std::vector<size_t> idx;
    for (size_t i = 0; i < samples.size(); ++i)
      if (samples[i].label == label) idx.push_back(i);
    // Spread the picks over the list (many patients), deterministically.
    const size_t step = std::max<size_t>(1, idx.size() / std::max(1, cols));
    for (int c = 0; c < cols && size_t(c) * step < idx.size(); ++c) {
      const size_t i = idx[c * step];
      const int x = kPad + c * (kCell + kPad), y = kHeader + row * (kCell + kCaption + kPad);
      cv::Mat cell;
      cv::resize(read_image(samples[i].path), cell, {kCell, kCell}, 0, 0, cv::INTER_AREA);
      cell.copyTo(canvas(cv::Rect(x, y, kCell, kCell)));
      const cv::Scalar color =
          label == kParasitized ? cv::Scalar(94, 43, 138) : cv::Scalar(74, 125, 47);
      put_text(canvas, kClassNames[label], {x, y + kCell + 17}, 0.5, color, 1);
      if (!prob.empty()) {
        char text[48];
        std::snprintf(text, sizeof text, "P=%.3f", prob[i]);
        const bool wrong = (prob[i] >= threshold) != (label == kParasitized);
        put_text(canvas, std::string(text) + (wrong ? " wrong" : ""), {x, y + kCell + 37}, 0.5,
                 wrong ? cv::Scalar(0, 0, 200) : cv::Scalar(60, 60, 60), 1);
      }
      csv << row << ',' << c << ',' << csv_field(samples[i].path) << ',' << kClassNames[label]
          << ',' << (prob.empty() ? std::string() : std::to_string(prob[i])) << '\n';
    }
  }
  write_text_atomic(csv_path(png), csv.str());
  write_png_atomic(png, canvas);
}

void draw_contact_sheet(const std::vector<ContactSheetItem>& items, int columns,
                        const std::string& title, const std::string& png) {
  constexpr int kCell = 112, kCaption = 40, kPad = 8, kHeader = 40;
  const int cols = std::max(1, columns);
  const int rows = std::max<int>(1, (static_cast<int>(items.size()) + cols - 1) / cols);
  cv::Mat canvas(kHeader + rows * (kCell + kCaption + kPad) + kPad, kPad + cols * (kCell + kPad),
                 CV_8UC3, cv::Scalar(255, 255, 255));
  put_text(canvas, title, {kPad, 28}, 0.7, {40, 40, 40}, 2);
  std::ostringstream csv;
  csv << "row,column,path,caption,detail\n";
  for (size_t i = 0; i < items.size(); ++i) {
    const int row = static_cast<int>(i) / cols, col = static_cast<int>(i) % cols;
    const int x = kPad + col * (kCell + kPad), y = kHeader + row * (kCell + kCaption + kPad);
    cv::Mat cell;
    try {
      cv::resize(read_image(items[i].path), cell, {kCell, kCell}, 0, 0, cv::INTER_AREA);
    } catch (const std::exception&) {
      cell = cv::Mat(kCell, kCell, CV_8UC3, cv::Scalar(200, 200, 200));  // unreadable: grey
    }
    cell.copyTo(canvas(cv::Rect(x, y, kCell, kCell)));
    const cv::Scalar color = items[i].flagged ? cv::Scalar(0, 0, 200) : cv::Scalar(60, 60, 60);
    put_text(canvas, items[i].caption, {x, y + kCell + 15}, 0.42, color, 1);
    put_text(canvas, items[i].detail, {x, y + kCell + 33}, 0.42, {60, 60, 60}, 1);
    csv << row << ',' << col << ',' << csv_field(items[i].path) << ','
        << csv_field(items[i].caption) << ',' << csv_field(items[i].detail) << '\n';
  }
  write_text_atomic(csv_path(png), csv.str());
  write_png_atomic(png, canvas);
}

void draw_architecture(const ArchitectureSummary& s, const std::string& png) {
  fs::create_directories(fs::path(png).parent_path());
  // One box per stage (a new stage starts after each pooling layer), left to right, each listing
  // its layers with output shape and parameters: readable at 100% zoom for any depth.
  std::vector<std::vector<const LayerInfo*>> stages(1);
  for (const auto& l : s.layers) {
    stages.back().push_back(&l);
    if (l.type == "MaxPool2d" || l.type == "AdaptiveAvgPool2d") stages.emplace_back();
  }
  if (stages.back().empty()) stages.pop_back();
  std::ostringstream dot;
  dot << "digraph model {\n  rankdir=LR; nodesep=0.3; ranksep=0.35;\n"
      << "  node [shape=plaintext, fontname=\"DejaVu Sans\", fontsize=11];\n"
      << "  label=\"" << s.arch << ": " << s.total_params << " parameters (" << s.trainable_params
      << " trainable), input 3x" << s.image_size << "x" << s.image_size
      << "\"; labelloc=t; fontsize=15;"
      << " fontname=\"DejaVu Sans\";\n"
      << "  input [label=<<table border=\"1\" cellborder=\"0\" "
         "bgcolor=\"#dfe8f5\"><tr><td><b>input</b></td></tr>"
      << "<tr><td>3 x " << s.image_size << " x " << s.image_size << "</td></tr></table>>];\n";
  std::string prev = "input";
  for (size_t b = 0; b < stages.size(); ++b) {
    const std::string id = "s" + std::to_string(b);
    dot << "  " << id
        << " [label=<<table border=\"1\" cellborder=\"0\" cellspacing=\"2\" bgcolor=\"#f7f8fb\">"
        << "<tr><td align=\"left\"><b>layer</b></td><td align=\"left\"><b>output</b></td>"
        << "<td align=\"right\"><b>params</b></td></tr>";
    for (const LayerInfo* l : stages[b]) {
      std::string shape;
      for (size_t k = 0; k < l->output_shape.size(); ++k)
        shape += (k ? "x" : "") + std::to_string(l->output_shape[k]);
      const char* fill = l->type == "Conv2d"   ? "#f7dde9"
                         : l->type == "Linear" ? "#dff1e5"
                                               : "#f7f8fb";
      dot << "<tr><td align=\"left\" bgcolor=\"" << fill << "\">" << l->name << " " << l->type
          << "</td><td align=\"left\">" << shape << "</td><td align=\"right\">" << l->params
          << "</td></tr>";
    }
    dot << "</table>>];\n  " << prev << " -> " << id << ";\n";
    prev = id;
  }
  dot << "}\n";
  const std::string dot_path = png + ".dot";
  write_text_atomic(dot_path, dot.str());
  const std::string tmp = png + ".tmp-" + std::to_string(::getpid()) + ".png";
  try {
    run_tool("dot -Tpng -Gdpi=110 -o " + quote(tmp) + " " + quote(dot_path), tmp, png,
             "architecture.png");
  } catch (...) {
    fs::remove(dot_path);
    throw;
  }
  fs::remove(dot_path);
}

void draw_feature_maps(const cv::Mat& input_bgr, const std::vector<cv::Mat>& maps,
                       const std::string& title, const std::string& png) {
  constexpr int kTile = 96, kPad = 6, kHeader = 40;
  const int n = static_cast<int>(maps.size()) + 1;  // the input comes first
  const int cols = std::min(n, 8), rows = (n + cols - 1) / cols;
  cv::Mat canvas(kHeader + rows * (kTile + kPad + 16) + kPad, kPad + cols * (kTile + kPad), CV_8UC3,
                 cv::Scalar(255, 255, 255));
  // Shrink the title until it fits the canvas.
  double scale = 0.7;
  while (scale > 0.35 && cv::getTextSize(title, cv::FONT_HERSHEY_SIMPLEX, scale, 2, nullptr).width >
                             canvas.cols - 2 * kPad)
    scale -= 0.05;
  put_text(canvas, title, {kPad, 28}, scale, {40, 40, 40}, scale > 0.5 ? 2 : 1);
  for (int i = 0; i < n; ++i) {
    const int x = kPad + (i % cols) * (kTile + kPad),
              y = kHeader + (i / cols) * (kTile + kPad + 16);
    cv::Mat tile;
    if (i == 0) {
      cv::resize(input_bgr, tile, {kTile, kTile}, 0, 0, cv::INTER_AREA);
      put_text(canvas, "input", {x, y + kTile + 13}, 0.4, {60, 60, 60});
    } else {
      cv::Mat norm, u8;
      cv::normalize(maps[i - 1], norm, 0, 255, cv::NORM_MINMAX);
      norm.convertTo(u8, CV_8U);
      cv::resize(u8, u8, {kTile, kTile}, 0, 0, cv::INTER_NEAREST);
      cv::applyColorMap(u8, tile, cv::COLORMAP_VIRIDIS);
      put_text(canvas, "channel " + std::to_string(i - 1), {x, y + kTile + 13}, 0.4, {60, 60, 60});
    }
    tile.copyTo(canvas(cv::Rect(x, y, kTile, kTile)));
  }
  write_png_atomic(png, canvas);
}

}  // namespace malaria
