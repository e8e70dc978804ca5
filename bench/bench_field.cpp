// Time per smear field on one core: segmentation alone, and segmentation plus classification of
// every cell with the bundled field model (what `malaria screen` does per field, without I/O).
// Fields: the first 20 IML fields (1280x960), cycled.
#include <benchmark/benchmark.h>

#include <filesystem>

#include "data/image.h"
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

void screen(benchmark::State& state) {
  malaria::set_compute_threads(1);
  static const malaria::Classifier model = malaria::Classifier::load(MALARIA_FIELD_MODEL);
  size_t i = 0;
  for (auto _ : state) {
    const auto field = malaria::screen_field(model, model.operating_point(),
                                             fields()[i++ % fields().size()], "field");
    benchmark::DoNotOptimize(field.summary.cells);
  }
  state.counters["fields_per_second"] =
      benchmark::Counter(state.iterations(), benchmark::Counter::kIsRate);
}

}  // namespace

BENCHMARK(segment)->Unit(benchmark::kMillisecond)->MinTime(3);
BENCHMARK(screen)->Unit(benchmark::kMillisecond)->MinTime(3);
BENCHMARK_MAIN();
