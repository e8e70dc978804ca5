#include "detect/detector_training.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <opencv2/imgproc.hpp>
#include <set>

#include "data/dataset.h"
#include "data/image.h"
#include "detect/detection_scoring.h"
#include "detect/detector.h"
#include "detect/detector_model.h"
#include "field/annotations.h"
#include "field/segmentation.h"
#include "model/model.h"
#include "model/model_info.h"
#include "report/figures.h"
#include "train/epoch_loop.h"
#include "train/trainer.h"
#include "util/files.h"
#include "util/progress.h"

namespace fs = std::filesystem;

namespace malaria {
namespace {

using Clock = std::chrono::steady_clock;

struct FieldParts {
  std::vector<AnnotatedField> train, val, test;
};

// Field groups follow the run's split.csv (its "fields-NNN" patients), or are dealt by seed.
FieldParts split_fields(const std::vector<AnnotatedField>& fields, const DetectorTrainOptions& o) {
  std::map<std::string, std::string> part_of;
  if (!o.split_csv.empty()) {
    const Split split = read_split_csv(o.split_csv);
    for (const auto& [part, samples] :
         {std::pair{"train", &split.train}, {"val", &split.val}, {"test", &split.test}})
      for (const Sample& s : *samples) part_of[s.patient] = part;
  } else {
    std::vector<std::string> groups;
    for (const auto& f : fields) groups.push_back(f.group);
    std::sort(groups.begin(), groups.end());
    groups.erase(std::unique(groups.begin(), groups.end()), groups.end());
    std::mt19937_64 rng(o.seed);
    std::shuffle(groups.begin(), groups.end(), rng);
    if (int(groups.size()) < o.val_groups + o.test_groups + 1)
      throw std::runtime_error("too few field groups (" + std::to_string(groups.size()) + ") for " +
                               std::to_string(o.val_groups) + " validation and " +
                               std::to_string(o.test_groups) + " test groups");
    for (size_t i = 0; i < groups.size(); ++i)
      part_of[groups[i]] = int(i) < o.test_groups                  ? "test"
                           : int(i) < o.test_groups + o.val_groups ? "val"
                                                                   : "train";
  }
  FieldParts parts;
  for (const auto& f : fields) {
    const auto it = part_of.find(f.group);
    if (it == part_of.end()) {
      if (!o.split_csv.empty())
        throw std::runtime_error(o.split_csv + " does not place field group " + f.group +
                                 " (it must come from a run trained with --fields on the same "
                                 "folder)");
      continue;
    }
    (it->second == "train" ? parts.train
     : it->second == "val" ? parts.val
                           : parts.test)
        .push_back(f);
  }
  if (parts.train.empty() || parts.val.empty())
    throw std::runtime_error("the split leaves no training or no validation fields");
  return parts;
}

// One field at the detector's scale, with its boxes and the regions the loss leaves alone:
// "difficult" boxes and, with ignore_unboxed, the red-cell-sized regions of the classical
// segmentation that no annotation touches and that are stained like the boxed red cells
// (crowded and edge cells the annotators skipped).
struct UnboxedCounts {
  size_t ignored = 0, taught_background = 0;
};

DetectorSample load_sample(const AnnotatedField& field, const DetectorTrainOptions& o,
                           UnboxedCounts& counts) {
  const cv::Mat bgr = read_image(field.path);
  const double s = o.input_scale;
  DetectorSample sample;
  cv::resize(bgr, sample.bgr, {}, s, s, cv::INTER_AREA);
  auto scaled = [s](const cv::Rect& r) {
    return cv::Rect2f(float(r.x * s), float(r.y * s), float(r.width * s), float(r.height * s));
  };
  for (const auto& cell : field.cells) {
    const int c = detector_class_of(cell.type);
    if (c < 0 && c != kInfectedStageUnknown) {
      sample.ignore.push_back(scaled(cell.box));
      continue;
    }
    sample.boxes.push_back(scaled(cell.box));
    sample.classes.push_back(c);
  }
  if (o.ignore_unboxed) {
    // Only regions stained like the field's boxed red cells are ignored: darker ones (white
    // cells, smudged lysed cells, stain debris) stay background, or the detector would offer
    // them to the classifier as cells.
    const FieldSegmentation seg = segment_cells(bgr);
    cv::Mat green;
    cv::extractChannel(bgr, green, 1);
    std::vector<cv::Rect> regions;
    std::vector<double> level;
    for (const auto& r : seg.cells) {
      regions.push_back(r.box);
      level.push_back(cv::mean(green(r.box), r.mask)[0]);
    }
    const auto match = match_annotations(regions, field.cells);
    std::vector<bool> touched(regions.size(), false);
    std::vector<double> red_cell_levels;
    for (size_t a = 0; a < field.cells.size(); ++a) {
      if (match[a] < 0) continue;
      touched[match[a]] = true;
      if (detector_class_of(field.cells[a].type) == 0) red_cell_levels.push_back(level[match[a]]);
    }
    double darkest = 0;  // no boxed red cell matched: ignore nothing by stain
    if (!red_cell_levels.empty()) {
      std::sort(red_cell_levels.begin(), red_cell_levels.end());
      darkest = red_cell_levels[red_cell_levels.size() / 20] - 10;
    }
    for (size_t i = 0; i < regions.size(); ++i) {
      const double area = seg.cells[i].area;
      bool overlaps = false;  // any overlap with a box: leave the box's own targets alone
      for (const auto& cell : field.cells) overlaps |= (regions[i] & cell.box).area() > 0;
      if (touched[i] || overlaps || area < 0.4 * seg.cell_area || area > 2.0 * seg.cell_area)
        continue;
      if (red_cell_levels.empty() || level[i] < darkest) {
        ++counts.taught_background;
        continue;
      }
      sample.ignore.push_back(scaled(regions[i]));
      ++counts.ignored;
    }
  }
  return sample;
}

struct WindowBatch {
  torch::Tensor images, heat, weight, index, cls, size, offset;
};

WindowBatch make_batch(const std::vector<DetectorSample>& samples, const DetectorTrainOptions& o,
                       std::mt19937& rng) {
  const int side = o.window, cells = side / kDetectorStride;
  WindowBatch b;
  b.images = torch::empty({o.batch, side, side, 3});
  b.heat = torch::empty({o.batch, cells, cells});
  b.weight = torch::empty({o.batch, cells, cells});
  std::vector<int64_t> index, cls;
  std::vector<float> size, offset;
  std::uniform_int_distribution<size_t> pick(0, samples.size() - 1);
  for (int i = 0; i < o.batch; ++i) {
    DetectorSample w = random_window(samples[pick(rng)], side, o.scale_jitter, rng);
    augment_field_photometric(w.bgr, o.augment, rng);
    cv::Mat rgb;
    cv::cvtColor(w.bgr, rgb, cv::COLOR_BGR2RGB);
    rgb.convertTo(rgb, CV_32FC3, 1.0 / 255);
    std::memcpy(b.images[i].data_ptr<float>(), rgb.ptr<float>(), sizeof(float) * side * side * 3);
    const DetectorTargets t = build_detector_targets(w);
    std::memcpy(b.heat[i].data_ptr<float>(), t.heat.data(), sizeof(float) * t.heat.size());
    std::memcpy(b.weight[i].data_ptr<float>(), t.weight.data(), sizeof(float) * t.weight.size());
    for (size_t k = 0; k < t.index.size(); ++k)
      index.push_back(i * int64_t(cells) * cells + t.index[k]);
    cls.insert(cls.end(), t.cls.begin(), t.cls.end());
    size.insert(size.end(), t.size.begin(), t.size.end());
    offset.insert(offset.end(), t.offset.begin(), t.offset.end());
  }
  // NHWC memory seen as NCHW: the channels-last layout the convolutions run fastest in.
  b.images = b.images.permute({0, 3, 1, 2});
  const int64_t k = int64_t(index.size());
  b.index = torch::tensor(index, torch::kLong);
  b.cls = torch::tensor(cls, torch::kLong);
  b.size = torch::from_blob(size.data(), {k, 2}).clone();
  b.offset = torch::from_blob(offset.data(), {k, 2}).clone();
  return b;
}

struct Losses {
  torch::Tensor total, heat, cls, size, offset;
};

// CenterNet's losses: a focal loss on the heat map (ignored pixels weigh nothing), and at the
// cell centres cross-entropy on the class (weighted: stages are rare) and L1 on size and offset.
Losses detector_loss(const torch::Tensor& out, const WindowBatch& b,
                     const torch::Tensor& class_weight) {
  namespace F = torch::nn::functional;
  Losses l;
  const auto p = torch::sigmoid(out.select(1, 0).to(torch::kFloat32)).clamp(1e-4, 1 - 1e-4);
  const auto pos = b.heat.eq(1).to(torch::kFloat32);
  const auto pos_loss = -(torch::log(p) * (1 - p).pow(2) * pos).sum();
  const auto neg_loss =
      -(torch::log(1 - p) * p.pow(2) * (1 - b.heat).pow(4) * (1 - pos) * b.weight).sum();
  l.heat = (pos_loss + neg_loss) / std::max(1.0, pos.sum().item<double>());
  const auto flat = out.to(torch::kFloat32).permute({0, 2, 3, 1}).reshape({-1, kDetectorOutputs});
  if (b.index.numel() == 0) {
    l.cls = l.size = l.offset = torch::zeros({});
  } else {
    const auto at = flat.index_select(0, b.index);
    // Cells of unknown stage carry no class target; a batch of only those has no class loss.
    l.cls = b.cls.ne(kIgnoredClass).any().item<bool>()
                ? F::cross_entropy(
                      at.slice(1, 1, 1 + kDetectorClasses), b.cls,
                      F::CrossEntropyFuncOptions().weight(class_weight).ignore_index(kIgnoredClass))
                : torch::zeros({});
    l.size = F::l1_loss(at.slice(1, 1 + kDetectorClasses, 3 + kDetectorClasses), b.size);
    l.offset = F::l1_loss(at.slice(1, 3 + kDetectorClasses, 5 + kDetectorClasses), b.offset);
  }
  l.total = l.heat + l.cls + 0.1 * l.size + l.offset;
  return l;
}

double learning_rate(const DetectorTrainOptions& o, int step) {
  const int warmup = std::max(1, o.steps / 20);
  if (step < warmup) return o.learning_rate * (step + 1) / warmup;
  const double progress = double(step - warmup) / std::max(1, o.steps - warmup);
  return o.learning_rate * 0.5 * (1 + std::cos(M_PI * progress));
}

nlohmann::json options_json(const DetectorTrainOptions& o) {
  return {{"fields_dir", o.fields_dir},
          {"split_csv", o.split_csv},
          {"val_groups", o.val_groups},
          {"test_groups", o.test_groups},
          {"steps", o.steps},
          {"batch", o.batch},
          {"window", o.window},
          {"width", o.width},
          {"input_scale", o.input_scale},
          {"scale_jitter", o.scale_jitter},
          {"augment", o.augment},
          {"learning_rate", o.learning_rate},
          {"optimizer", "adamw"},
          {"weight_decay", 1e-4},
          {"ignore_unboxed", o.ignore_unboxed},
          {"seed", o.seed},
          {"loss", "focal heat map + weighted class cross-entropy + 0.1 L1 size + L1 offset"}};
}

// Detections of every field of a part, at a low threshold so that any higher one can be scored.
std::vector<std::vector<DetectedCell>> detect_all(const CellDetector& detector,
                                                  const std::vector<AnnotatedField>& fields,
                                                  const std::string& label, bool progress) {
  std::vector<std::vector<DetectedCell>> all;
  ProgressBar bar(fields.size(), label, "field");
  for (const auto& f : fields) {
    all.push_back(detector.detect(read_image(f.path), 0.05f));
    if (progress) bar.update(all.size());
  }
  if (progress) bar.finish();
  return all;
}

// The training fields at the detector's scale, and the class weights their counts give.
struct TrainingData {
  std::vector<DetectorSample> samples;
  UnboxedCounts unboxed;
  std::array<double, kDetectorClasses> class_count{};
  std::vector<float> class_weights;
};

TrainingData load_training_data(const std::vector<AnnotatedField>& fields,
                                const DetectorTrainOptions& o) {
  TrainingData data;
  ProgressBar bar(fields.size(), "loading fields", "field");
  for (const auto& f : fields) {
    data.samples.push_back(load_sample(f, o, data.unboxed));
    for (int c : data.samples.back().classes)
      if (c >= 0) data.class_count[c] += 1;
    if (o.progress) bar.update(data.samples.size());
  }
  if (o.progress) bar.finish();
  // Rare stages weigh more, by the square root of their rarity (capped): the class head must
  // not learn "always uninfected", nor overfit two dozen schizonts.
  for (int c = 0; c < kDetectorClasses; ++c)
    data.class_weights.push_back(float(std::clamp(
        std::sqrt(data.class_count[0] / std::max(1.0, data.class_count[c])), 1.0, 30.0)));
  return data;
}

nlohmann::json data_json(const FieldParts& parts, const TrainingData& data) {
  std::set<std::string> test_groups, val_groups;
  for (const auto& f : parts.test) test_groups.insert(f.group);
  for (const auto& f : parts.val) val_groups.insert(f.group);
  return {{"train_fields", parts.train.size()},
          {"val_fields", parts.val.size()},
          {"test_fields", parts.test.size()},
          {"train_cells_per_class", data.class_count},
          {"ignored_unboxed_regions", data.unboxed.ignored},
          {"unboxed_dark_regions_taught_as_background", data.unboxed.taught_background},
          {"val_groups", val_groups},
          {"test_groups", test_groups}};
}

// Mean losses over the steps since the last history row.
struct LossMeans {
  double heat = 0, cls = 0, size = 0, n = 0;
  void add(const Losses& l) {
    heat += l.heat.item<double>();
    cls += l.cls.item<double>();
    size += l.size.item<double>();
    n += 1;
  }
  nlohmann::json take_row(int step, double rate) {
    nlohmann::json row = {{"step", step},
                          {"heat_loss", heat / n},
                          {"class_loss", cls / n},
                          {"size_loss", size / n},
                          {"learning_rate", rate}};
    *this = LossMeans();
    return row;
  }
};

// The threshold: the best F2 (recall counts twice: a missed cell is a missed parasite) on the
// validation groups; then the held-out figures on the test groups at that threshold, all into
// `meta`. The file at `model_path` is the detector as it will ship, with a provisional threshold.
float choose_threshold_and_evaluate(const std::string& model_path, const FieldParts& parts,
                                    nlohmann::json& meta, bool progress) {
  const CellDetector detector = CellDetector::load(model_path);
  const auto val_detections = detect_all(detector, parts.val, "validation fields", progress);
  const float threshold = choose_score_threshold(parts.val, val_detections);
  meta["score_threshold"] = threshold;
  meta["validation"] = score_detections(parts.val, val_detections, threshold).to_json();
  if (!parts.test.empty()) {
    const auto test_detections = detect_all(detector, parts.test, "test fields", progress);
    meta["test"] = score_detections(parts.test, test_detections, threshold).to_json();
  }
  return threshold;
}

// The run's checkpoint folder: weights, optimizer state, and state.json (written last) with the
// first step not yet applied to those weights, the history and the seconds trained.
void save_checkpoint(const fs::path& dir, DetectorNet& net, torch::optim::AdamW& optimizer,
                     int next_step, const nlohmann::json& history, double seconds) {
  torch::save(net, (dir / "net.pt").string());
  torch::save(optimizer, (dir / "optimizer.pt").string());
  write_text_atomic(
      dir / "state.json",
      nlohmann::json{{"step", next_step}, {"history", history}, {"seconds", seconds}}.dump());
}

// False when there is no checkpoint to continue from.
bool load_checkpoint(const fs::path& dir, DetectorNet& net, torch::optim::AdamW& optimizer,
                     int& step, nlohmann::json& history, double& seconds) {
  if (!fs::is_regular_file(dir / "state.json")) return false;
  const auto state = nlohmann::json::parse(read_text(dir / "state.json"));
  torch::load(net, (dir / "net.pt").string());
  torch::load(optimizer, (dir / "optimizer.pt").string());
  step = state.at("step").get<int>();
  history = state.at("history");
  seconds = state.value("seconds", 0.0);
  return true;
}

std::string loss_status(const nlohmann::json& row) {
  char status[120];
  std::snprintf(status, sizeof status, "heat %.3f class %.3f size %.2f",
                row["heat_loss"].get<double>(), row["class_loss"].get<double>(),
                row["size_loss"].get<double>());
  return status;
}

// One optimizer step on a batch; the losses come back for the history (and the check that
// they are finite: a diverged step is not applied when its loss is not).
Losses train_step(DetectorNet& net, torch::optim::AdamW& optimizer, const WindowBatch& b,
                  const torch::Tensor& class_weight, double rate, bool bf16) {
  for (auto& group : optimizer.param_groups())
    static_cast<torch::optim::AdamWOptions&>(group.options()).lr(rate);
  release_gradients(*net);
  torch::Tensor output;
  {
    Bf16Autocast autocast(bf16);
    output = net->forward(b.images);
  }
  Losses l = detector_loss(output, b, class_weight);
  if (!std::isfinite(l.total.item<double>())) return l;
  l.total.backward();
  optimizer.step();
  return l;
}

}  // namespace

namespace {
// What the detector file records about its run (the threshold is provisional until chosen).
nlohmann::json detector_metadata(const DetectorTrainOptions& o, const FieldParts& parts,
                                 const TrainingData& data, int steps, double seconds, bool bf16) {
  return {{"format", kDetectorFormat},
          {"format_version", kModelFormatVersion},
          {"name", fs::path(o.out_dir).filename().string()},
          {"width", o.width},
          {"input_scale", o.input_scale},
          {"score_threshold", 0.3},
          {"classes", kDetectorClassNames},
          {"stride", kDetectorStride},
          {"training", options_json(o)},
          {"class_weights", data.class_weights},
          {"steps_run", steps},
          {"train_seconds", seconds},
          {"bf16", bf16},
          {"data", data_json(parts, data)}};
}
}  // namespace

nlohmann::json train_detector(const DetectorTrainOptions& o) {
  if (o.threads > 0) torch::set_num_threads(o.threads);
  torch::manual_seed(o.seed);
  const fs::path out(o.out_dir), checkpoint = out / "checkpoint";
  fs::create_directories(checkpoint);
  const std::vector<AnnotatedField> fields = read_field_annotations(o.fields_dir);
  const FieldParts parts = split_fields(fields, o);
  spdlog::info("detector: {} training, {} validation, {} test fields", parts.train.size(),
               parts.val.size(), parts.test.size());

  const TrainingData data = load_training_data(parts.train, o);
  const torch::Tensor class_weight = torch::tensor(data.class_weights);

  DetectorNet net(o.width);
  to_channels_last(*net);
  torch::optim::AdamW optimizer(net->parameters(),
                                torch::optim::AdamWOptions(o.learning_rate).weight_decay(1e-4));
  int step = 0;
  nlohmann::json history = nlohmann::json::array();
  double seconds = 0;
  if (load_checkpoint(checkpoint, net, optimizer, step, history, seconds))
    spdlog::info("detector: continuing at step {} of {}", step, o.steps);
  write_text_atomic(out / "config.json", options_json(o).dump(2));

  const bool bf16 = cpu_has_bf16();
  StopSignals signals;
  net->train();
  ProgressBar bar(o.steps, "training detector", "step");
  LossMeans means;
  auto start = Clock::now();
  auto save_state = [&](int next_step) {
    save_checkpoint(checkpoint, net, optimizer, next_step, history,
                    seconds + std::chrono::duration<double>(Clock::now() - start).count());
  };
  for (; step < o.steps; ++step) {
    if (StopSignals::requested()) {
      save_state(step);
      throw std::runtime_error("stopped at step " + std::to_string(step) +
                               "; run the same "
                               "command again to continue");
    }
    std::mt19937 rng(uint32_t(o.seed * 1000003 + step));  // a step's data depend on its number only
    const WindowBatch b = make_batch(data.samples, o, rng);
    const Losses l = train_step(net, optimizer, b, class_weight, learning_rate(o, step), bf16);
    if (!std::isfinite(l.total.item<double>()))
      throw std::runtime_error("the detector's loss is not a finite number at step " +
                               std::to_string(step) + "; try a smaller --lr");
    means.add(l);
    if ((step + 1) % 50 == 0 || step + 1 == o.steps)
      history.push_back(means.take_row(step + 1, learning_rate(o, step)));
    if (o.progress && !history.empty()) bar.update(step + 1, loss_status(history.back()));
    if ((step + 1) % o.checkpoint_every == 0) save_state(step + 1);
  }
  if (o.progress) bar.finish();
  save_state(step);
  seconds += std::chrono::duration<double>(Clock::now() - start).count();

  // The model file first with a provisional threshold, so the detector can be run as shipped.
  net->eval();
  nlohmann::json meta = detector_metadata(o, parts, data, step, seconds, bf16);
  const fs::path model_path = out / "detector.pt";
  save_detector_file(model_path.string(), net, meta);
  const float threshold =
      choose_threshold_and_evaluate(model_path.string(), parts, meta, o.progress);
  save_detector_file(model_path.string(), net, meta);
  write_text_atomic(out / "evaluation.json",
                    nlohmann::json{{"validation", meta["validation"]},
                                   {"test", meta.value("test", nlohmann::json())},
                                   {"score_threshold", threshold}}
                        .dump(2));
  write_text_atomic(out / "history.json", history.dump(2));
  plot_detector_history(history, (out / "training_history.png").string());
  return meta;
}

}  // namespace malaria
