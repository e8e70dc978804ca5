#include "eval/non_cells.h"

#include <algorithm>
#include <filesystem>
#include <opencv2/imgproc.hpp>
#include <random>

#include "data/image.h"
#include "field/annotations.h"

namespace malaria {

namespace fs = std::filesystem;

namespace {

void add(std::vector<NonCell>& out, const char* kind, std::string name, cv::Mat bgr) {
  if (!bgr.empty()) out.push_back({kind, std::move(name), std::move(bgr)});
}

void synthetic(std::vector<NonCell>& out, std::mt19937_64& rng) {
  const std::vector<std::pair<std::string, cv::Scalar>> colours = {
      {"purple", {150, 60, 120}}, {"pink", {190, 160, 230}}, {"white", {255, 255, 255}},
      {"black", {0, 0, 0}},       {"grey", {128, 128, 128}}, {"red", {40, 40, 220}},
      {"blue", {200, 80, 40}},    {"green", {60, 180, 60}},  {"lilac", {210, 170, 200}}};
  for (int side : {32, 64, 128, 256}) {
    for (const auto& [name, c] : colours)
      add(out, "synthetic", "solid-" + name + "-" + std::to_string(side),
          cv::Mat(side, side, CV_8UC3, c));
    for (int k = 0; k < 3; ++k) {
      cv::Mat noise(side, side, CV_8UC3);
      cv::randu(noise, 0, 256);
      add(out, "synthetic", "noise-uniform-" + std::to_string(side) + "-" + std::to_string(k),
          noise);
      cv::Mat pinkish(side, side, CV_8UC3, cv::Scalar(190, 160, 220));
      cv::Mat g(side, side, CV_8UC3);
      cv::randn(g, 0, 40);
      add(out, "synthetic", "noise-pink-" + std::to_string(side) + "-" + std::to_string(k),
          pinkish + g);
      cv::Mat dark(side, side, CV_8UC3, cv::Scalar(0, 0, 0));
      cv::randn(g, 0, 60);
      cv::Mat blob = cv::Mat::zeros(side, side, CV_8U);
      cv::circle(blob, {side / 2, side / 2}, side * 2 / 5, 255, cv::FILLED);
      cv::Mat speckle = cv::Mat(side, side, CV_8UC3, cv::Scalar(150, 120, 200)) + g;
      speckle.copyTo(dark, blob);  // noise in a cell-shaped disc on black
      add(out, "synthetic", "noise-disc-" + std::to_string(side) + "-" + std::to_string(k), dark);
    }
    cv::Mat gradient(side, side, CV_8UC3), radial(side, side, CV_8UC3);
    for (int y = 0; y < side; ++y)
      for (int x = 0; x < side; ++x) {
        const int v = 255 * x / side,
                  r = static_cast<int>(255 * std::hypot(x - side / 2.0, y - side / 2.0) / side);
        gradient.at<cv::Vec3b>(y, x) = {static_cast<uchar>(v), static_cast<uchar>(255 - v), 128};
        radial.at<cv::Vec3b>(y, x) = {static_cast<uchar>(std::min(255, 120 + r)),
                                      static_cast<uchar>(std::min(255, 80 + r)),
                                      static_cast<uchar>(std::min(255, 160 + r))};
      }
    add(out, "synthetic", "gradient-linear-" + std::to_string(side), gradient);
    add(out, "synthetic", "gradient-radial-" + std::to_string(side), radial);
    for (const char* text : {"Lorem ipsum", "RBC 42", "P. falciparum"}) {
      for (const cv::Scalar& bg : {cv::Scalar(255, 255, 255), cv::Scalar(210, 180, 230)}) {
        cv::Mat page(side, side, CV_8UC3, bg);
        for (int line = 0; line * 14 + 14 < side; ++line)
          cv::putText(page, text, {2, 12 + line * 14}, cv::FONT_HERSHEY_SIMPLEX, side / 256.0 + 0.2,
                      {30, 30, 30}, 1, cv::LINE_AA);
        add(out, "synthetic", std::string("text-") + std::to_string(side) + "-" + text, page);
      }
    }
    cv::Mat checker(side, side, CV_8UC3);
    for (int y = 0; y < side; ++y)
      for (int x = 0; x < side; ++x)
        checker.at<cv::Vec3b>(y, x) =
            ((x / 8 + y / 8) % 2) ? cv::Vec3b(160, 90, 140) : cv::Vec3b(0, 0, 0);
    add(out, "synthetic", "checkerboard-" + std::to_string(side), checker);
    cv::Mat shapes(side, side, CV_8UC3, cv::Scalar(0, 0, 0));
    std::uniform_int_distribution<int> pos(0, side - 1);
    for (int k = 0; k < 6; ++k)
      cv::rectangle(shapes, {pos(rng), pos(rng)}, {pos(rng), pos(rng)},
                    cv::Scalar(pos(rng) % 256, pos(rng) % 256, pos(rng) % 256), cv::FILLED);
    add(out, "synthetic", "rectangles-" + std::to_string(side), shapes);
    cv::Mat square(side, side, CV_8UC3, cv::Scalar(0, 0, 0));
    cv::rectangle(square, {side / 5, side / 5}, {side * 4 / 5, side * 4 / 5},
                  cv::Scalar(150, 60, 120), cv::FILLED);
    add(out, "synthetic", "purple-square-on-black-" + std::to_string(side), square);
  }
}

// Windows of a field that no annotated cell overlaps by more than a sliver.
void fields_and_crops(const NonCellSources& src, std::vector<NonCell>& out, std::mt19937_64& rng) {
  if (src.fields_dir.empty()) return;
  const auto fields = read_field_annotations(src.fields_dir);
  for (size_t i = 0; i < fields.size(); i += std::max<size_t>(1, fields.size() / 20))
    add(out, "field", fields[i].name, read_image(fields[i].path, kFieldImageLimits));
  size_t made = 0;
  std::uniform_int_distribution<size_t> pick(0, fields.empty() ? 0 : fields.size() - 1);
  for (size_t attempt = 0;
       made < src.field_crops && attempt < src.field_crops * 200 && !fields.empty(); ++attempt) {
    const auto& f = fields[pick(rng)];
    const cv::Mat image = read_image(f.path, kFieldImageLimits);
    const int side = std::uniform_int_distribution<int>(40, 140)(rng);
    if (image.cols <= side || image.rows <= side) continue;
    const cv::Rect window(std::uniform_int_distribution<int>(0, image.cols - side - 1)(rng),
                          std::uniform_int_distribution<int>(0, image.rows - side - 1)(rng), side,
                          side);
    const bool touches_cell = std::any_of(f.cells.begin(), f.cells.end(), [&](const auto& c) {
      return (window & c.box).area() > 0.02 * c.box.area();
    });
    if (touches_cell) continue;
    add(out, "field-crop",
        f.name + "@" + std::to_string(window.x) + "," + std::to_string(window.y) + "+" +
            std::to_string(side),
        image(window).clone());
    ++made;
  }
}

void photos(const NonCellSources& src, std::vector<NonCell>& out, std::mt19937_64& rng) {
  for (const auto& dir : src.photo_dirs) {
    if (!fs::is_directory(dir)) continue;
    std::vector<fs::path> files;
    for (const auto& e : fs::recursive_directory_iterator(dir))
      if (e.is_regular_file()) files.push_back(e.path());
    std::sort(files.begin(), files.end());
    for (const auto& path : files) {
      cv::Mat image;
      try {
        image = read_image(path.string(), kFieldImageLimits);
      } catch (const std::exception&) {
        continue;  // not an image OpenCV reads
      }
      add(out, "photo", path.filename().string(), image);
      // And a cell-sized square cut from its middle and from a random place.
      const int side = std::min(image.cols, image.rows) / 3;
      if (side < 24) continue;
      add(out, "photo", path.filename().string() + "@centre",
          image(cv::Rect((image.cols - side) / 2, (image.rows - side) / 2, side, side)).clone());
      const cv::Rect random(std::uniform_int_distribution<int>(0, image.cols - side)(rng),
                            std::uniform_int_distribution<int>(0, image.rows - side)(rng), side,
                            side);
      add(out, "photo", path.filename().string() + "@random", image(random).clone());
    }
  }
}

void damaged_cells(const NonCellSources& src, std::vector<NonCell>& out, std::mt19937_64& rng) {
  std::vector<Sample> cells = src.cells;
  std::shuffle(cells.begin(), cells.end(), rng);
  cells.resize(std::min(cells.size(), src.damaged_per_kind));
  // Where a cell is cut and how hard it is blurred vary, so that no single cut is what is measured.
  std::uniform_real_distribution<double> cut(0.4, 0.6), blur(0.12, 0.25);
  std::uniform_int_distribution<int> side(0, 3);
  for (const auto& s : cells) {
    const cv::Mat cell = read_image(s.path);
    const std::string name = fs::path(s.path).filename().string();
    add(out, "damaged-cell", "blank-" + name, cv::Mat::zeros(cell.size(), CV_8UC3));
    cv::Mat half = cell.clone();
    const int w = half.cols, h = half.rows, at_x = static_cast<int>(cut(rng) * w),
              at_y = static_cast<int>(cut(rng) * h);
    const cv::Rect halves[] = {
        {at_x, 0, w - at_x, h}, {0, 0, at_x, h}, {0, at_y, w, h - at_y}, {0, 0, w, at_y}};
    half(halves[side(rng)]).setTo(0);
    add(out, "damaged-cell", "half-" + name, half);
    cv::Mat quarter = cell.clone();
    quarter(cv::Rect(0, 0, w, at_y)).setTo(0);
    quarter(cv::Rect(0, 0, at_x, h)).setTo(0);
    add(out, "damaged-cell", "quarter-" + name, quarter);
    cv::Mat blurred;
    cv::GaussianBlur(cell, blurred, {0, 0}, blur(rng) * std::max(w, h));  // 8-16 px at 64 px
    add(out, "damaged-cell", "blurred-" + name, blurred);
  }
}

}  // namespace

std::vector<NonCell> make_non_cells(const NonCellSources& sources) {
  std::mt19937_64 rng(sources.seed);
  std::vector<NonCell> out;
  synthetic(out, rng);
  fields_and_crops(sources, out, rng);
  photos(sources, out, rng);
  damaged_cells(sources, out, rng);
  return out;
}

std::vector<std::string> default_photo_dirs() {
  std::vector<std::string> dirs;
  for (const char* d :
       {"/usr/lib/python3/dist-packages/skimage/data", "/usr/share/doc/opencv-doc/examples/data"})
    if (fs::is_directory(d)) dirs.push_back(d);
  return dirs;
}

}  // namespace malaria
