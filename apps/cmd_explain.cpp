// explain: Grad-CAM heat maps over cells, and the pointing game that checks them.
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <opencv2/imgproc.hpp>

#include "commands.h"
#include "data/dataset.h"
#include "data/image.h"
#include "eval/cell_check.h"
#include "eval/decision.h"
#include "explain/explanation.h"
#include "model/classifier.h"
#include "util/files.h"
#include "util/progress.h"
#include "util/text.h"

namespace malaria::cli {

namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

struct ExplainOptions {
  std::string model;
  std::vector<std::string> images;
  std::string out_dir;
  bool json = false;
  std::string pointing_game;  // dataset folder or split.csv (its test rows)
  size_t limit = 300;
  double tolerance = 0.1;
};

constexpr size_t kBatch = 32;

std::string overlay_path(const std::string& dir, const std::string& image) {
  return dir + "/" + fs::path(image).stem().string() + "_gradcam.png";
}

// Per image: an overlay PNG in --out and/or a JSON record; unreadable files get an error each.
int explain_images(const Classifier& model, const ExplainOptions& o) {
  if (o.out_dir.empty() && !o.json)
    throw std::invalid_argument("say where the explanations go: --out DIR and/or --json");
  if (!o.out_dir.empty()) fs::create_directories(o.out_dir);
  json records = json::array();
  int status = 0;
  for (size_t start = 0; start < o.images.size(); start += kBatch) {
    std::vector<cv::Mat> images;
    std::vector<std::string> paths;
    for (size_t i = start; i < std::min(o.images.size(), start + kBatch); ++i) {
      try {
        images.push_back(read_image(o.images[i]));
        paths.push_back(o.images[i]);
      } catch (const ImageError& e) {
        records.push_back({{"file", o.images[i]}, {"error", e.what()}});
        std::fprintf(stderr, "error: %s\n", e.what());
        status = 2;
      }
    }
    const auto explanations = model.explain(images);
    for (size_t k = 0; k < images.size(); ++k) {
      const auto& e = explanations[k];
      const CellDecision d = decide_cell(check_cell_image(images[k]), e.probability, e.atypicality,
                                         model.operating_point());
      if (d.rejected()) {  // no heat map and no probability for what is not a cell
        records.push_back({{"file", paths[k]}, {"decision", d.decision}, {"reason", d.reason}});
        if (!o.json)
          std::printf("%-12s %6s  %s (%s)\n", d.decision.c_str(), "-", paths[k].c_str(),
                      d.reason.c_str());
        continue;
      }
      if (!o.out_dir.empty()) {
        const std::string png = overlay_path(o.out_dir, paths[k]);
        write_text_atomic(png, encode_png(heatmap_overlay(images[k], e.heatmap)));
        if (!o.json)
          std::printf("%-12s %.4f  %s\n", d.decision.c_str(), e.probability, png.c_str());
      }
      if (o.json)
        records.push_back({{"file", paths[k]},
                           {"probability_parasitized", e.probability},
                           {"label", d.label},
                           {"decision", d.decision},
                           {"heatmap", heatmap_json(e.heatmap)}});
    }
  }
  if (o.json) std::cout << records.dump(-1, ' ', false, json::error_handler_t::replace) << '\n';
  return status;
}

// Parasitized cells to test: a dataset folder's, or the test rows of a run's split.csv.
std::vector<Sample> parasitized_cells(const std::string& source) {
  std::vector<Sample> all;
  if (fs::path(source).extension() == ".csv") {
    all = read_split_csv(source).test;
  } else {
    all = scan_dataset(source).samples;
  }
  std::vector<Sample> cells;
  for (const auto& s : all)
    if (s.label == kParasitized) cells.push_back(s);
  if (cells.empty()) throw std::runtime_error(source + " has no Parasitized test cells");
  return cells;
}

// Outline of the parasite blob (green) on the overlay, for looking at hits and misses.
cv::Mat annotated(const cv::Mat& bgr, const cv::Mat& heatmap) {
  cv::Mat out = heatmap_overlay(bgr, heatmap);
  std::vector<std::vector<cv::Point>> contours;
  cv::findContours(parasite_mask(bgr), contours, cv::RETR_EXTERNAL, cv::CHAIN_APPROX_SIMPLE);
  cv::drawContours(out, contours, -1, cv::Scalar(0, 255, 0), 1);
  return out;
}

int run_pointing_game(const Classifier& model, const ExplainOptions& o) {
  const auto all = parasitized_cells(o.pointing_game);
  // Evenly spread over the list (sorted by path, so by patient), the same every time.
  std::vector<Sample> cells;
  const size_t n = std::min(o.limit, all.size());
  for (size_t i = 0; i < n; ++i) cells.push_back(all[i * all.size() / n]);
  if (!o.out_dir.empty()) fs::create_directories(o.out_dir);
  size_t with_target = 0, hits = 0, unreadable = 0;
  double chance = 0;
  ProgressBar bar(cells.size(), "pointing game");
  for (size_t start = 0; start < cells.size(); start += kBatch) {
    std::vector<cv::Mat> images;
    std::vector<std::string> paths;
    for (size_t i = start; i < std::min(cells.size(), start + kBatch); ++i) {
      try {
        images.push_back(read_image(cells[i].path));
        paths.push_back(cells[i].path);
      } catch (const ImageError&) {
        ++unreadable;
      }
    }
    const auto explanations = model.explain(images);
    for (size_t k = 0; k < images.size(); ++k) {
      const int side = std::min(images[k].rows, images[k].cols);
      const int tolerance = static_cast<int>(std::lround(o.tolerance * side));
      const PointingResult r = pointing_game(images[k], explanations[k].heatmap, tolerance);
      if (!r.has_target) continue;
      ++with_target;
      hits += r.hit;
      chance += r.chance;
      if (!o.out_dir.empty())
        write_text_atomic(o.out_dir + "/" + (r.hit ? "hit_" : "miss_") +
                              fs::path(paths[k]).stem().string() + ".png",
                          encode_png(annotated(images[k], explanations[k].heatmap)));
    }
    bar.update(std::min(cells.size(), start + kBatch));
  }
  bar.finish();
  const json result = {
      {"source", o.pointing_game},
      {"cells", cells.size()},
      {"unreadable", unreadable},
      {"with_visible_parasite", with_target},
      {"hits", hits},
      {"hit_rate", with_target ? double(hits) / with_target : 0.0},
      {"chance_rate", with_target ? chance / with_target : 0.0},
      {"tolerance", o.tolerance},
      {"rule",
       "hit when the Grad-CAM maximum lies on the darkest green-channel blob inside the cell, "
       "grown by the tolerance (a share of the cell's side)"}};
  if (o.json) {
    std::cout << result.dump(2) << '\n';
  } else {
    std::printf(
        "pointing game: %zu of %zu Parasitized cells with a visible parasite: hit rate "
        "%.1f%% (a random point in the cell: %.1f%%)\n",
        hits, with_target, 100 * result["hit_rate"].get<double>(),
        100 * result["chance_rate"].get<double>());
  }
  return 0;
}

Command add_explain(CLI::App& app, const GlobalOptions& global) {
  auto o = std::make_shared<ExplainOptions>();
  auto* sub = app.add_subcommand(
      "explain", "Grad-CAM: where in each cell the model sees evidence of a parasite");
  sub->add_option("--model", o->model, "model file")->required();
  sub->add_option("images", o->images, "cell images");
  sub->add_option("--out", o->out_dir, "write IMAGE_gradcam.png overlays here");
  sub->add_flag("--json", o->json,
                "print per image: file, probability_parasitized, decision and the heat map "
                "(rows of the network input)");
  sub->add_option("--pointing-game", o->pointing_game,
                  "instead: score the maps on the Parasitized cells of a dataset folder or of a "
                  "run's split.csv (its test patients)");
  add_number(sub, "--limit", o->limit, 1, 1e7, "pointing game: cells to test");
  add_number(sub, "--tolerance", o->tolerance, 0, 1,
             "pointing game: how far from the parasite still counts, as a share of the cell");
  return {sub, [o, &global] {
            set_compute_threads(global.threads);
            const Classifier model = Classifier::load(o->model);
            if (!o->pointing_game.empty()) return run_pointing_game(model, *o);
            if (o->images.empty())
              throw std::invalid_argument("give cell images to explain, or --pointing-game");
            return explain_images(model, *o);
          }};
}

}  // namespace

std::vector<Command> add_explain_commands(CLI::App& app, const GlobalOptions& global) {
  return {add_explain(app, global)};
}

}  // namespace malaria::cli
