// Where the time of one training step goes: each layer's forward and backward pass timed on its
// own (the input and the gradient it would see in training), the loss and the Adam step, against
// the whole step; the convolutions' and dense layers' arithmetic in GFLOP/s against the CPU's
// float32 peak, measured with an FMA loop at the vector width the convolutions use.
//
//   build/bench/layer_profile [--arch seed] [--size 128] [--batch 32] [--threads 2]
//   ONEDNN_MAX_CPU_ISA=AVX2 OPENBLAS_CORETYPE=Haswell build/bench/layer_profile   # AVX2 paths
#include <immintrin.h>
#include <torch/torch.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "model/model.h"
#include "train/trainer.h"

using namespace malaria;

namespace {

using Clock = std::chrono::steady_clock;

// Median wall time in milliseconds of `reps` calls, after two unmeasured warm-up calls.
double median_ms(int reps, const std::function<void()>& call) {
  call();
  call();
  std::vector<double> ms;
  for (int i = 0; i < reps; ++i) {
    const auto t0 = Clock::now();
    call();
    ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
  }
  std::nth_element(ms.begin(), ms.begin() + reps / 2, ms.end());
  return ms[reps / 2];
}

// Twelve independent FMA chains in named variables (an array of them ran 35% slower on a Zen 5
// core) hide the FMA latency on every current x86 core.
#define MALARIA_FMA_CHAINS(fma, v)                                                            \
  v a0 = add, a1 = add, a2 = add, a3 = add, a4 = add, a5 = add, a6 = add, a7 = add, a8 = add, \
    a9 = add, a10 = add, a11 = add;                                                           \
  for (int64_t i = 0; i < iterations; ++i) {                                                  \
    a0 = fma(a0, mul, add), a1 = fma(a1, mul, add), a2 = fma(a2, mul, add);                   \
    a3 = fma(a3, mul, add), a4 = fma(a4, mul, add), a5 = fma(a5, mul, add);                   \
    a6 = fma(a6, mul, add), a7 = fma(a7, mul, add), a8 = fma(a8, mul, add);                   \
    a9 = fma(a9, mul, add), a10 = fma(a10, mul, add), a11 = fma(a11, mul, add);               \
  }
constexpr int kChains = 12;

__attribute__((target("avx2,fma"))) float fma_loop_avx2(int64_t iterations) {
  const __m256 mul = _mm256_set1_ps(0.999999f), add = _mm256_set1_ps(1e-7f);
  MALARIA_FMA_CHAINS(_mm256_fmadd_ps, __m256)
  const __m256 s = a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7 + a8 + a9 + a10 + a11;
  return s[0];
}

__attribute__((target("avx512f"))) float fma_loop_avx512(int64_t iterations) {
  const __m512 mul = _mm512_set1_ps(0.999999f), add = _mm512_set1_ps(1e-7f);
  MALARIA_FMA_CHAINS(_mm512_fmadd_ps, __m512)
  const __m512 s = a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7 + a8 + a9 + a10 + a11;
  return s[0];
}

// float32 GFLOP/s of `threads` threads each running the FMA loop (2 FLOP per lane per FMA).
double fma_peak_gflops_once(int threads, bool avx512) {
  const int64_t iterations = 100'000'000;  // about a quarter of a second
  const int lanes = avx512 ? 16 : 8;
  std::vector<std::thread> pool;
  std::vector<float> sink(threads);
  const auto t0 = Clock::now();
  for (int t = 0; t < threads; ++t)
    pool.emplace_back(
        [&, t] { sink[t] = avx512 ? fma_loop_avx512(iterations) : fma_loop_avx2(iterations); });
  for (auto& th : pool) th.join();
  const double seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  if (sink[0] == 12345.f) std::puts("");  // keeps the loops from being optimised away
  return 2.0 * lanes * kChains * iterations * threads / seconds / 1e9;
}

// The best of three runs: a neighbour on a shared machine can only make a run slower.
double fma_peak_gflops(int threads, bool avx512) {
  double best = 0;
  for (int run = 0; run < 3; ++run) best = std::max(best, fma_peak_gflops_once(threads, avx512));
  return best;
}

// oneDNN runs the convolutions at the widest ISA the CPU has, unless ONEDNN_MAX_CPU_ISA caps it.
bool convolutions_use_avx512() {
  const std::string cap = onednn_isa_cap();
  // Every ISA name oneDNN accepts below AVX-512 (SSE41, AVX, AVX2, AVX2_VNNI) lacks the prefix.
  const bool below_avx512 = !cap.empty() && cap != "ALL" && cap.rfind("AVX512", 0) != 0;
  return __builtin_cpu_supports("avx512f") && !below_avx512;
}

std::string cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  for (std::string line; std::getline(in, line);)
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
  return "unknown CPU";
}

// Multiply-adds of a layer's forward pass, times two: FLOP. Zero for layers without weights.
double forward_flop(const torch::nn::Module& layer, const torch::Tensor& in,
                    const torch::Tensor& out) {
  if (auto conv = dynamic_cast<const torch::nn::Conv2dImpl*>(&layer)) {
    const auto& w = conv->weight;
    return 2.0 * out.numel() * w.size(1) * w.size(2) * w.size(3);
  }
  if (auto dense = dynamic_cast<const torch::nn::LinearImpl*>(&layer))
    return 2.0 * in.size(0) * dense->weight.numel();
  return 0;
}

struct LayerTiming {
  std::string name;
  double forward_ms = 0, backward_ms = 0, gflop = 0;  // gflop: forward + backward
};

// Times every layer of the network on the activations a training step gives it.
std::vector<LayerTiming> time_layers(CellClassifier& model, torch::Tensor x, int reps) {
  std::vector<LayerTiming> rows;
  bool first = true;
  for (torch::nn::Sequential* part : {&model->features, &model->head}) {
    const auto children = (*part)->named_children();
    size_t index = 0;
    for (auto& layer : **part) {
      // The first layer's input needs no gradient, as in training.
      const torch::Tensor in = x.detach().requires_grad_(!first);
      torch::Tensor out;
      LayerTiming row;
      std::string type = layer.ptr()->name();
      type = type.substr(type.rfind("::") + 2);
      row.name = children[index++].key() + " (" + type.substr(0, type.size() - 4) + ")";
      // An in-place layer cannot overwrite a leaf: it gets a copy, whose cost is subtracted.
      const auto* relu = layer.ptr()->as<torch::nn::ReLU>();
      const bool in_place = relu && relu->options.inplace();
      auto input = [&] { return in_place ? in.clone() : in; };
      const double copy_ms = in_place ? median_ms(reps, [&] { input(); }) : 0.0;
      const double forward_ms = median_ms(reps, [&] { out = layer.forward(input()); });
      row.forward_ms = forward_ms - copy_ms;
      // Gradients are returned, not accumulated into .grad, so repetitions do not add up.
      std::vector<torch::Tensor> wrt = layer.ptr()->parameters();
      if (!first) wrt.push_back(in);
      const torch::Tensor grad = torch::ones_like(out);
      if (out.requires_grad())
        row.backward_ms =
            median_ms(reps, [&] { torch::autograd::grad({layer.forward(input())}, wrt, {grad}); }) -
            forward_ms;
      const double f = forward_flop(*layer.ptr(), in, out);
      row.gflop = (first ? 2 : 3) * f / 1e9;  // backward: weight gradient, plus input gradient
      rows.push_back(row);
      x = out.detach();
      first = false;
    }
  }
  return rows;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app("Per-layer time of one training step (float32, channels-last, as malaria trains)");
  std::string arch = "seed";
  int size = 128, batch = 32, threads = 2, reps = 15;
  app.add_option("--arch", arch, "network")->capture_default_str();
  app.add_option("--size", size, "image side")->capture_default_str();
  app.add_option("--batch", batch, "images per step")->capture_default_str();
  app.add_option("--threads", threads, "compute threads")->capture_default_str();
  app.add_option("--reps", reps, "timed repetitions per row (median)")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  // Before any LibTorch work: its OpenMP threads keep spinning for a while after each operation
  // and would share the cores with the FMA loop.
  const bool avx512 = convolutions_use_avx512();
  const double peak = fma_peak_gflops(threads, avx512);
  torch::set_num_threads(threads);
  torch::manual_seed(0);

  auto model = build_model(arch, size);
  model->train();
  to_channels_last(*model);
  torch::optim::Adam adam(model->parameters(), torch::optim::AdamOptions(5e-4));
  const auto x = torch::rand({batch, 3, size, size}).contiguous(at::MemoryFormat::ChannelsLast);
  const auto y = torch::randint(0, 2, {batch}).to(torch::kFloat);

  auto step = [&] {
    release_gradients(*model);
    auto loss = torch::binary_cross_entropy_with_logits(model->forward(x).reshape({batch}), y);
    loss.backward();
    adam.step();
  };
  const double step_ms = median_ms(reps, step);
  const double adam_ms = median_ms(reps, [&] { adam.step(); });
  const auto rows = time_layers(model, x, reps);

  std::printf("%s: %s at %dx%d, batch %d, %d threads, float32 channels-last\n", cpu_model().c_str(),
              arch.c_str(), size, size, batch, threads);
  std::printf("float32 peak, FMA loop at the convolutions' width (%s): %.0f GFLOP/s\n\n",
              avx512 ? "AVX-512" : "AVX2", peak);
  std::printf("| layer | forward ms | backward ms | share of step | GFLOP | GFLOP/s | of peak |\n");
  std::printf("| --- | ---: | ---: | ---: | ---: | ---: | ---: |\n");
  double layers_ms = 0, total_gflop = 0;
  for (const auto& r : rows) {
    const double ms = r.forward_ms + r.backward_ms;
    layers_ms += ms;
    total_gflop += r.gflop;
    std::printf("| %s | %.2f | %.2f | %.1f%% |", r.name.c_str(), r.forward_ms, r.backward_ms,
                100 * ms / step_ms);
    if (r.gflop > 0)
      std::printf(" %.2f | %.0f | %.0f%% |\n", r.gflop, r.gflop / ms * 1e3,
                  100 * r.gflop / ms * 1e3 / peak);
    else
      std::printf(" | | |\n");
  }
  std::printf("| Adam step | %.2f | | %.1f%% | | | |\n", adam_ms, 100 * adam_ms / step_ms);
  const double rest = step_ms - layers_ms - adam_ms;
  std::printf(
      "| rest (loss, autograd, gradient bookkeeping, cache misses) | %.2f | | %.1f%% | | | |\n",
      rest, 100 * rest / step_ms);
  std::printf("| **whole step** | **%.1f** | | 100%% | %.2f | %.0f | %.0f%% |\n", step_ms,
              total_gflop, total_gflop / step_ms * 1e3, 100 * total_gflop / step_ms * 1e3 / peak);
  std::printf("\n%.1f images/s\n", batch / step_ms * 1e3);
  return 0;
}
