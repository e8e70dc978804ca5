// Time per smear field on one core: finding the cells alone (the learned detector, and the
// classical segmentation), and finding plus classifying every cell with the bundled field model
// (what `malaria screen` does per field, without I/O), with either segmenter.
// Fields: the first 20 IML fields (1280x960), cycled.
#include <benchmark/benchmark.h>

#include <filesystem>

#include "data/image.h"
#include "detect/detector.h"
#include "field/annotations.h"
#include "field/screening.h"
#include "field/segmentation.h"
#include "model/classifier.h"

namespace {

std::vector<cv::Mat>& fields() {
  static std::vector<cv::Mat> images = [] {
    std::vector<cv::Mat> out;
    const auto annotated = malaria::read_field_annotations(MALARIA_DATA_ROOT "/fields/iml");
    for (size_t i = 0; i < annotated.size() && out.size() < 20; ++i)
      out.push_back(malaria::read_image(annotated[i].path, malaria::kFieldImageLimits));
    return out;
  }();
  return images;
}

void segment(benchmark::State& state) {
  size_t i = 0, cells = 0;
  for (auto _ : state) {
    const auto seg = malaria::segment_cells(fields()[i++ % fields().size()]);
    cells += seg.cells.size();
  }
  state.counters["cells_per_field"] = double(cells) / state.iterations();
  state.counters["fields_per_second"] =
      benchmark::Counter(state.iterations(), benchmark::Counter::kIsRate);
}

const malaria::CellDetector& detector() {
  static const malaria::CellDetector loaded = malaria::CellDetector::load(MALARIA_DETECTOR_MODEL);
  return loaded;
}

void detect(benchmark::State& state) {
  malaria::set_compute_threads(1);
  const auto segmenter = malaria::detector_segmenter(detector());
  size_t i = 0, cells = 0;
  for (auto _ : state) cells += segmenter.segment(fields()[i++ % fields().size()]).cells.size();
  state.counters["cells_per_field"] = double(cells) / state.iterations();
  state.counters["fields_per_second"] =
      benchmark::Counter(state.iterations(), benchmark::Counter::kIsRate);
}

void screen(benchmark::State& state) {
  malaria::set_compute_threads(1);
  static const malaria::Classifier model = malaria::Classifier::load(MALARIA_FIELD_MODEL);
  const auto segmenter =
      state.range(0) ? malaria::detector_segmenter(detector()) : malaria::classic_segmenter();
  state.SetLabel(segmenter.name);
  const auto& point = model.operating_point(malaria::field_operating_point(model));
  size_t i = 0;
  for (auto _ : state) {
    const auto field =
        malaria::screen_field(model, point, segmenter, fields()[i++ % fields().size()], "field");
    benchmark::DoNotOptimize(field.summary.cells);
  }
  state.counters["fields_per_second"] =
      benchmark::Counter(state.iterations(), benchmark::Counter::kIsRate);
}

}  // namespace

BENCHMARK(segment)->Unit(benchmark::kMillisecond)->MinTime(3);
BENCHMARK(detect)->Unit(benchmark::kMillisecond)->MinTime(3);
BENCHMARK(screen)->Arg(1)->Arg(0)->Unit(benchmark::kMillisecond)->MinTime(3);
BENCHMARK_MAIN();
