#include "field/annotations.h"

#include <algorithm>
#include <charconv>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>

#include "data/dataset.h"
#include "data/image.h"
#include "util/files.h"
#include "util/text.h"

namespace fs = std::filesystem;

namespace malaria {
namespace {

// Coordinates beyond the largest image we read are typing errors.
constexpr int kMaxAnnotatedCoordinate = 1 << 16;
// Annotators' boxes may overhang the edge by a few pixels.
constexpr int kBoxSlack = 8;

int label_of(const std::string& type) {
  if (type == "red blood cell" || type == "Uninfected" || type == "uninfected") return kUninfected;
  if (type == "difficult") return -1;
  static const char* const infected[] = {"Parasitized", "parasitized", "ring",
                                         "trophozoite", "schizont",    "gametocyte"};
  for (const char* name : infected)
    if (type == name) return kParasitized;
  throw std::runtime_error("unknown cell label '" + printable(type) +
                           "' (expected Parasitized, Uninfected, red blood cell, ring, "
                           "trophozoite, schizont, gametocyte or difficult)");
}

// A box coordinate: a whole number of pixels, written in full ("12", not "1e3", "5.9" or
// "12px"), within what an image can hold.
int parse_coordinate(const std::string& text) {
  int value = 0;
  const char* end = text.data() + text.size();
  const auto [stop, error] = std::from_chars(text.data(), end, value);
  if (text.empty() || error != std::errc() || stop != end || value < 0 ||
      value > kMaxAnnotatedCoordinate)
    throw std::runtime_error("'" + printable(text, 40) + "' is not a pixel coordinate (a whole " +
                             "number from 0 to " + std::to_string(kMaxAnnotatedCoordinate) + ")");
  return value;
}

int to_int(const nlohmann::json& value) {
  // IML stores numbers as strings; a JSON number must be a whole one too.
  if (value.is_string()) return parse_coordinate(value.get<std::string>());
  if (value.is_number_integer()) return parse_coordinate(value.dump());
  throw std::runtime_error("'" + printable(value.dump(), 40) + "' is not a pixel coordinate");
}

// Image names stay inside the annotation folder: no absolute paths, no "..".
std::string image_path(const fs::path& dir, const std::string& name) {
  const fs::path relative(name);
  if (name.empty() || relative.is_absolute() || name.find("..") != std::string::npos ||
      name.find('\0') != std::string::npos)
    throw std::runtime_error("bad image name '" + printable(name) +
                             "' (must be a file name inside the annotation folder)");
  for (const fs::path& candidate : {dir / "images" / name, dir / name})
    if (fs::is_regular_file(candidate)) return candidate.string();
  throw std::runtime_error("image '" + printable(name) + "' is in the annotations but not in " +
                           (dir / "images").string() + " or " + dir.string());
}

std::vector<AnnotatedField> read_iml(const fs::path& dir, const std::string& file) {
  const nlohmann::json doc = nlohmann::json::parse(read_text(file));
  std::vector<AnnotatedField> fields;
  size_t entry_number = 0;
  for (const auto& entry : doc) {
    ++entry_number;
    AnnotatedField field;
    size_t object_number = 0;
    try {
      field.name = entry.at("image_name").get<std::string>();
      field.path = image_path(dir, field.name);
      for (const auto& object : entry.at("objects")) {
        ++object_number;
        const auto& b = object.at("bbox");
        AnnotatedCell cell;
        cell.type = object.at("type").get<std::string>();
        cell.label = label_of(cell.type);
        cell.box = {to_int(b.at("x")), to_int(b.at("y")), to_int(b.at("w")), to_int(b.at("h"))};
        field.cells.push_back(cell);
      }
    } catch (const std::exception& e) {
      throw std::runtime_error(file + ": image " + std::to_string(entry_number) +
                               (field.name.empty() ? "" : " (" + printable(field.name, 80) + ")") +
                               (object_number ? ", object " + std::to_string(object_number) : "") +
                               ": " + e.what());
    }
    fields.push_back(std::move(field));
  }
  return fields;
}

std::vector<AnnotatedField> read_csv(const fs::path& dir, const std::string& file) {
  std::istringstream lines(read_text(file));
  std::string line;
  std::getline(lines, line);
  const auto header = parse_csv_line(line);
  if (header.size() < 6 || header[0] != "image" || header[5] != "label")
    throw std::runtime_error(file + ": the header must be image,x,y,w,h,label[,group]");
  std::map<std::string, AnnotatedField> by_name;
  for (int number = 2; std::getline(lines, line); ++number) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty()) continue;
    const auto f = parse_csv_line(line);
    const std::string where = file + " line " + std::to_string(number);
    if (f.size() < 6) throw std::runtime_error(where + ": expected at least 6 fields");
    AnnotatedField& field = by_name[f[0]];
    AnnotatedCell cell;
    try {
      if (field.name.empty()) {
        field.name = f[0];
        field.path = image_path(dir, f[0]);
      }
      if (f.size() > 6) field.group = f[6];
      cell.box = {parse_coordinate(f[1]), parse_coordinate(f[2]), parse_coordinate(f[3]),
                  parse_coordinate(f[4])};
      cell.type = f[5];
      cell.label = label_of(f[5]);
    } catch (const std::exception& e) {
      throw std::runtime_error(where + ": " + e.what());
    }
    field.cells.push_back(cell);
  }
  std::vector<AnnotatedField> fields;
  for (auto& [name, field] : by_name) fields.push_back(std::move(field));
  return fields;
}

}  // namespace

std::vector<AnnotatedField> read_field_annotations(const std::string& dir) {
  const fs::path root(dir);
  const fs::path json = root / "annotations.json", csv = root / "annotations.csv";
  std::vector<AnnotatedField> fields;
  try {
    if (fs::is_regular_file(json))
      fields = read_iml(root, json.string());
    else if (fs::is_regular_file(csv))
      fields = read_csv(root, csv.string());
    else
      throw std::runtime_error("no annotations.json (IML) or annotations.csv in " + dir);
  } catch (const nlohmann::json::exception& e) {
    throw std::runtime_error(json.string() + ": " + e.what());
  }
  // Boxes against the image's own size, read from its header (no decoding).
  for (const auto& field : fields) {
    ImageSize size;
    try {
      size = read_image_size(read_regular_file(field.path, kMaxImageFileBytes), field.path);
    } catch (const std::exception& e) {
      throw std::runtime_error(std::string("annotated image: ") + e.what());
    }
    for (const auto& cell : field.cells) {
      const cv::Rect& b = cell.box;
      if (b.width <= 0 || b.height <= 0 || b.x + b.width > size.width + kBoxSlack ||
          b.y + b.height > size.height + kBoxSlack)
        throw std::runtime_error(
            field.name + ": the box x=" + std::to_string(b.x) + " y=" + std::to_string(b.y) +
            " w=" + std::to_string(b.width) + " h=" + std::to_string(b.height) +
            " has no area or lies outside the image (" + std::to_string(size.width) + "x" +
            std::to_string(size.height) + ")");
    }
  }
  std::sort(fields.begin(), fields.end(),
            [](const auto& a, const auto& b) { return a.name < b.name; });
  for (size_t i = 0; i < fields.size(); ++i) {
    if (!fields[i].group.empty()) continue;
    char group[32];
    std::snprintf(group, sizeof group, "fields-%03zu", i / kFieldsPerGroup + 1);
    fields[i].group = group;
  }
  return fields;
}

double intersection_over_union(const cv::Rect& a, const cv::Rect& b) {
  const double inter = (a & b).area();
  const double uni = a.area() + b.area() - inter;
  return uni > 0 ? inter / uni : 0.0;
}

std::vector<int> match_annotations(const std::vector<cv::Rect>& detections,
                                   const std::vector<AnnotatedCell>& annotated) {
  std::vector<int> match(annotated.size(), -1);
  for (size_t a = 0; a < annotated.size(); ++a) {
    double best = -1;
    for (size_t d = 0; d < detections.size(); ++d) {
      const cv::Rect& det = detections[d];
      const double iou = intersection_over_union(det, annotated[a].box);
      const cv::Point centre(det.x + det.width / 2, det.y + det.height / 2);
      if ((iou >= 0.3 || annotated[a].box.contains(centre)) && iou > best) {
        best = iou;
        match[a] = static_cast<int>(d);
      }
    }
  }
  return match;
}

}  // namespace malaria
