#include "field/field_cells.h"

#include <array>
#include <atomic>
#include <filesystem>
#include <mutex>
#include <opencv2/imgcodecs.hpp>
#include <set>
#include <thread>

#include "data/dataset.h"
#include "data/image.h"
#include "field/annotations.h"
#include "field/segmentation.h"
#include "util/files.h"

namespace fs = std::filesystem;

namespace malaria {

bool is_field_group(const std::string& patient) { return patient.rfind("fields-", 0) == 0; }

namespace {

struct CutCounts {
  std::array<size_t, 2> cells{0, 0};  // written, per label
  size_t infected_boxes = 0, infected_missed = 0, left_out = 0;
  CutCounts& operator+=(const CutCounts& o) {
    for (int l : {0, 1}) cells[l] += o.cells[l];
    infected_boxes += o.infected_boxes;
    infected_missed += o.infected_missed;
    left_out += o.left_out;
    return *this;
  }
};

// Segments one field, labels its regions by the annotations and writes the crops into dir.
CutCounts cut_field_cells(const AnnotatedField& field, const fs::path& dir) {
  const cv::Mat bgr = read_image(field.path);
  const FieldSegmentation seg = segment_cells(bgr);
  std::vector<cv::Rect> boxes;
  for (const auto& c : seg.cells) boxes.push_back(c.box);
  const std::vector<int> match = match_annotations(boxes, field.cells);
  std::vector<int> label(boxes.size(), kUninfected);
  CutCounts counts;
  for (size_t a = 0; a < field.cells.size(); ++a) {
    const int l = field.cells[a].label;
    counts.infected_boxes += l == kParasitized;
    if (match[a] < 0) {
      counts.infected_missed += l == kParasitized;
      continue;
    }
    // Parasitized wins over Uninfected for a candidate that holds both (a clump).
    if (l == kParasitized || (l < 0 && label[match[a]] != kParasitized)) label[match[a]] = l;
  }
  const std::string stem = fs::path(field.name).stem().string();
  for (size_t d = 0; d < boxes.size(); ++d) {
    if (seg.cells[d].cut_by_edge || label[d] < 0) {
      ++counts.left_out;
      continue;
    }
    const fs::path file = dir / kClassNames[label[d]] /
                          (field.group + "_IMG_" + stem + "_" + std::to_string(d) + ".png");
    if (!cv::imwrite(file.string(), masked_crop(bgr, seg.cells[d])))
      throw std::runtime_error("cannot write " + file.string());
    ++counts.cells[label[d]];
  }
  return counts;
}

}  // namespace

nlohmann::json extract_field_cells(const std::string& fields_dir, const std::string& out_dir,
                                   int threads) {
  const fs::path out(out_dir), summary_file = out / "summary.json";
  if (fs::is_regular_file(summary_file)) return nlohmann::json::parse(read_text(summary_file));
  const std::vector<AnnotatedField> fields = read_field_annotations(fields_dir);
  const fs::path building = out.string() + ".partial";
  fs::remove_all(building);
  for (int label : {kParasitized, kUninfected})
    fs::create_directories(building / kClassNames[label]);

  std::atomic<size_t> next{0};
  std::mutex mutex;
  CutCounts total;
  std::vector<std::string> errors;
  auto work = [&] {
    for (size_t i; (i = next++) < fields.size();) {
      try {
        const CutCounts counts = cut_field_cells(fields[i], building);
        std::lock_guard lock(mutex);
        total += counts;
      } catch (const std::exception& e) {
        std::lock_guard lock(mutex);
        errors.push_back(fields[i].name + ": " + e.what());
      }
    }
  };
  const int n = threads > 0 ? threads : std::max(1u, std::thread::hardware_concurrency());
  std::vector<std::thread> pool;
  for (int t = 0; t < n; ++t) pool.emplace_back(work);
  for (auto& t : pool) t.join();
  if (!errors.empty()) {
    fs::remove_all(building);
    throw std::runtime_error("cannot cut cells from " + std::to_string(errors.size()) +
                             " field(s), e.g. " + errors.front());
  }
  std::set<std::string> groups;
  for (const auto& f : fields) groups.insert(f.group);
  const nlohmann::json summary = {
      {"fields_dir", fields_dir},
      {"fields", fields.size()},
      {"groups", groups.size()},
      {"cells",
       {{"Parasitized", total.cells[kParasitized]}, {"Uninfected", total.cells[kUninfected]}}},
      {"infected_boxes", total.infected_boxes},
      {"infected_boxes_not_found", total.infected_missed},
      {"candidates_left_out", total.left_out}};
  write_text_atomic((building / "summary.json").string(), summary.dump(2));
  fs::remove_all(out);
  fs::rename(building, out);
  return summary;
}

}  // namespace malaria
