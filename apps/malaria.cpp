// `malaria`: the command-line entry point. Subcommands live in apps/cmd_*.cpp, registered below.
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string_view>

#include "commands.h"
#include "data/dataset.h"

namespace malaria::cli {

const char* const kGetDataHelp =
    "Get the NIH malaria dataset (27,558 cell images, public domain) with\n"
    "  malaria download-data --out DIR\n"
    "then point the tool at DIR/cell_images (the folder holding Parasitized/ and Uninfected/)\n"
    "with --data DIR/cell_images or the MALARIA_DATA environment variable.";

std::string default_data_dir() {
  if (const char* env = std::getenv("MALARIA_DATA")) return env;
  return MALARIA_DEFAULT_DATA;
}

CLI::Validator number_in(double lo, double hi, bool whole) {
  char range[96];
  std::snprintf(range, sizeof range, "%.10g to %.10g", lo, hi);
  const std::string bounds = range;
  return CLI::Validator(
      [lo, hi, bounds, whole](std::string& text) -> std::string {
        char* end = nullptr;
        const double v = std::strtod(text.c_str(), &end);
        if (end == text.c_str() || *end != '\0' || !std::isfinite(v) || v < lo || v > hi ||
            (whole && v != std::floor(v)))
          return std::string("must be ") + (whole ? "a whole number" : "a number") + " from " +
                 bounds + " (got '" + text + "')";
        return {};
      },
      "NUMBER in " + bounds);
}

CLI::Option* add_operating_point_option(CLI::App* app, std::string& point,
                                        const std::string& fallback) {
  return app->add_option("--operating-point", point,
                         "decision threshold and Inconclusive band from the model file: "
                         "'balanced', 'screening' (97% sensitivity on validation), "
                         "'parasitemia' (field models) or another it holds (default: " +
                             fallback + ")");
}

}  // namespace malaria::cli

namespace {
// --shared-cpu: LibTorch's OpenMP threads spin while they wait for work, which on a CPU shared
// with another busy process burns the time slices that process needs and stalls both. libgomp
// reads OMP_WAIT_POLICY once, when it is loaded (before main), so the program re-executes itself
// once with OMP_WAIT_POLICY=PASSIVE. Measured with bench/shared_cpu.sh: training beside a
// 2-thread busy process keeps 54% of its idle speed instead of 23%, and loses ~12% when idle.
void apply_shared_cpu_policy(int argc, char** argv) {
  bool wanted = false;
  for (int i = 1; i < argc; ++i) wanted |= std::string_view(argv[i]) == "--shared-cpu";
  if (!wanted || std::getenv("OMP_WAIT_POLICY")) return;  // the user's own setting wins
  ::setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
  ::execv("/proc/self/exe", argv);
  std::fprintf(stderr, "warning: --shared-cpu: cannot re-execute (%s); continuing without it\n",
               std::strerror(errno));
}
}  // namespace

int main(int argc, char** argv) {
  using namespace malaria::cli;
  apply_shared_cpu_policy(argc, argv);
  CLI::App app{"malaria: detect malaria parasites in images of single red blood cells"};
  app.require_subcommand(1);
  app.fallthrough();
  app.set_version_flag("--version", MALARIA_VERSION);
  GlobalOptions global;
  app.add_option("--threads", global.threads, "compute threads (default: all cores)")
      ->check(number_in(0, 1024));
  bool shared_cpu = false;
  app.add_flag("--shared-cpu", shared_cpu,
               "other busy programs share this CPU: compute threads sleep instead of spinning "
               "while they wait (OMP_WAIT_POLICY=PASSIVE; faster when shared, ~12% slower idle)");
  app.add_option("--log-level", global.log_level, "trace, debug, info, warn, error or off")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "off"}))
      ->capture_default_str();

  std::vector<Command> commands;
  for (auto add :
       {add_data_commands, add_train_commands, add_evaluate_commands, add_model_commands,
        add_serve_commands, add_explain_commands, add_field_commands, add_records_commands})
    for (auto& c : add(app, global)) commands.push_back(std::move(c));

  CLI11_PARSE(app, argc, argv);
  // Logs and errors go to stderr, so stdout carries only results (tables, CSV, JSON).
  spdlog::set_default_logger(spdlog::stderr_color_mt("malaria"));
  spdlog::set_pattern("%^%l%$: %v");
  spdlog::set_level(spdlog::level::from_str(global.log_level));
  try {
    for (const auto& c : commands)
      if (c.app->parsed()) return c.run();
  } catch (const malaria::DatasetError& e) {
    spdlog::error("{}\n\n{}", e.what(), kGetDataHelp);
    return 1;
  } catch (const std::exception& e) {
    spdlog::error("{}", e.what());
    return 1;
  }
  return 0;
}
