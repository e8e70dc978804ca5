// Google Benchmark micro-benchmarks: the compute-only ceiling of each network (synthetic tensors,
// no data loading) and the hot pieces of the input pipeline.
#include <benchmark/benchmark.h>
#include <torch/torch.h>

#include <filesystem>
#include <opencv2/imgcodecs.hpp>

#include "data/augment.h"
#include "data/image.h"
#include "data/loader.h"
#include "model/model.h"

using namespace malaria;

namespace {

// Rates are per wall-clock second (UseRealTime): Google Benchmark's default divides by the main
// thread's CPU time, which overstates a multi-threaded step.
// `standard` is what `malaria` runs: float32, channels-last (and BatchNorm folded for inference).
// The others measure each lever: the channels-first baseline, and bfloat16 autocast on top.
// `out_of_place_relu` and `zeroed_gradients` are the levers taken back: ReLUs writing a new tensor,
// and gradients zeroed and accumulated into instead of released before each step.
enum class Lever { standard, channels_first, bf16_autocast, out_of_place_relu, zeroed_gradients };

void train_step(benchmark::State& state, const std::string& arch, int size,
                Lever lever = Lever::standard) {
  torch::set_num_threads(static_cast<int>(state.range(0)));
  auto model = build_model(arch, size);
  model->train();
  const bool channels_last = lever != Lever::channels_first;
  if (channels_last) to_channels_last(*model);
  if (lever == Lever::out_of_place_relu)
    for (auto& m : model->modules())
      if (auto* relu = m->as<torch::nn::ReLU>()) relu->options.inplace(false);
  torch::optim::Adam opt(model->parameters(), torch::optim::AdamOptions(5e-4));
  const int64_t batch = 32;
  auto x = torch::rand({batch, 3, size, size});
  if (channels_last) x = x.contiguous(at::MemoryFormat::ChannelsLast);
  auto y = torch::randint(0, 2, {batch}).to(torch::kFloat);
  for (auto _ : state) {
    if (lever == Lever::zeroed_gradients)
      opt.zero_grad();
    else
      release_gradients(*model);
    torch::Tensor logits;
    {
      Bf16Autocast autocast(lever == Lever::bf16_autocast);
      logits = model->forward(x).reshape({batch}).to(torch::kFloat);
    }
    auto loss = torch::binary_cross_entropy_with_logits(logits, y);
    loss.backward();
    opt.step();
  }
  state.SetItemsProcessed(state.iterations() * batch);
}

void infer(benchmark::State& state, const std::string& arch, int size,
           Lever lever = Lever::standard) {
  torch::set_num_threads(static_cast<int>(state.range(0)));
  auto model = build_model(arch, size);
  model->eval();
  const bool channels_last = lever != Lever::channels_first;
  if (channels_last) {  // as Classifier::load prepares it
    model = fold_batchnorm(model);
    to_channels_last(*model);
  }
  Bf16Autocast autocast(lever == Lever::bf16_autocast);
  torch::NoGradGuard no_grad;
  const int64_t batch = 32;
  auto x = torch::rand({batch, 3, size, size});
  if (channels_last) x = x.contiguous(at::MemoryFormat::ChannelsLast);
  for (auto _ : state) benchmark::DoNotOptimize(model->forward(x));
  state.SetItemsProcessed(state.iterations() * batch);
}

std::string sample_png(const std::string& folder) {
  for (const auto& e : std::filesystem::directory_iterator(std::string(MALARIA_DATA_ROOT) + "/" +
                                                           folder + "/Parasitized"))
    return e.path().string();
  return "";
}

void decode_resize(benchmark::State& state, const std::string& folder) {
  const std::string path = sample_png(folder);
  for (auto _ : state) benchmark::DoNotOptimize(resize_rgb(read_image(path), 64));
  state.SetItemsProcessed(state.iterations());
}

void augment(benchmark::State& state) {
  const cv::Mat rgb =
      resize_rgb(read_image(sample_png("cell_images")), static_cast<int>(state.range(0)));
  uint64_t seed = 0;
  for (auto _ : state) benchmark::DoNotOptimize(augment_image(rgb, AugmentConfig(), ++seed));
  state.SetItemsProcessed(state.iterations());
}

void batching(benchmark::State& state) {
  // One batch of 32 from the decoded-image cache: augmentation and conversion to floats.
  std::vector<Sample> samples;
  for (const auto& e : std::filesystem::directory_iterator(std::string(MALARIA_DATA_ROOT) +
                                                           "/cell_images/Parasitized")) {
    samples.push_back({e.path().string(), 1, "p"});
    if (samples.size() == 32) break;
  }
  ImageCache cache(64);
  LoaderOptions o;
  o.image_size = 64;
  o.batch_size = 32;
  o.augment = AugmentConfig();
  o.workers = 0;
  o.cache = &cache;
  BatchLoader loader(samples, o);
  int epoch = 0;
  for (auto _ : state) {
    loader.start_epoch(epoch++);
    benchmark::DoNotOptimize(loader.next());
  }
  state.SetItemsProcessed(state.iterations() * 32);
}

// The network rows: 2 threads (the 1-thread lever aside), milliseconds, at least 3 s each, rates
// per wall-clock second. Names follow BENCHMARK_CAPTURE's: "train_step/seed_128/2/...".
void register_networks() {
  struct Row {
    const char* name;
    bool train;
    const char* arch;
    int size;
    Lever lever;
    int threads;
  };
  const Row rows[] = {
      {"seed_128", true, "seed", 128, Lever::standard, 2},
      {"cellnet_64", true, "cellnet", 64, Lever::standard, 2},
      {"seed_64", true, "seed", 64, Lever::standard, 2},
      {"seed_128", false, "seed", 128, Lever::standard, 2},
      {"cellnet_64", false, "cellnet", 64, Lever::standard, 2},
      // Levers: the channels-first float32 baseline, bfloat16 autocast on top of `standard`, and
      // the two taken back (out-of-place ReLUs, zeroed gradients), one thread instead of two.
      {"seed_128_channels_first", true, "seed", 128, Lever::channels_first, 2},
      {"cellnet_64_channels_first", true, "cellnet", 64, Lever::channels_first, 2},
      {"seed_128_bf16", true, "seed", 128, Lever::bf16_autocast, 2},
      {"cellnet_64_bf16", true, "cellnet", 64, Lever::bf16_autocast, 2},
      {"seed_128_channels_first", false, "seed", 128, Lever::channels_first, 2},
      {"cellnet_64_channels_first", false, "cellnet", 64, Lever::channels_first, 2},
      {"seed_128_out_of_place_relu", true, "seed", 128, Lever::out_of_place_relu, 2},
      {"cellnet_64_out_of_place_relu", true, "cellnet", 64, Lever::out_of_place_relu, 2},
      {"seed_128_zeroed_gradients", true, "seed", 128, Lever::zeroed_gradients, 2},
      {"cellnet_64_zeroed_gradients", true, "cellnet", 64, Lever::zeroed_gradients, 2},
      {"cellnet_64_1thread", true, "cellnet", 64, Lever::standard, 1},
  };
  for (const Row& r : rows) {
    const std::string name = std::string(r.train ? "train_step/" : "infer/") + r.name;
    const std::string arch = r.arch;
    benchmark::RegisterBenchmark(name.c_str(),
                                 [=](benchmark::State& state) {
                                   if (r.train)
                                     train_step(state, arch, r.size, r.lever);
                                   else
                                     infer(state, arch, r.size, r.lever);
                                 })
        ->Arg(r.threads)
        ->Unit(benchmark::kMillisecond)
        ->MinTime(3)
        ->UseRealTime();
  }
}

}  // namespace

BENCHMARK_CAPTURE(decode_resize, png_64, "cell_images")->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(decode_resize, png_128, "cell_images_128")->Unit(benchmark::kMicrosecond);
BENCHMARK(augment)->Arg(64)->Arg(128)->Unit(benchmark::kMicrosecond);
BENCHMARK(batching)->Unit(benchmark::kMicrosecond);

int main(int argc, char** argv) {
  register_networks();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
