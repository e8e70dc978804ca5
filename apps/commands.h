// The `malaria` subcommands. Each file registers one group of subcommands: its own options
// struct, validated options, and a run function that calls the library.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>
#include <string>
#include <type_traits>
#include <vector>

namespace malaria::cli {

// Options that come before or after the subcommand name.
struct GlobalOptions {
  int threads = 0;  // compute threads; 0: all cores
  std::string log_level = "info";
};

struct Command {
  CLI::App* app;             // the parsed subcommand
  std::function<int()> run;  // its exit code
};

// A number within [lo, hi] (a whole one if `whole`); NaN and infinities are refused, and bounds
// print readably.
CLI::Validator number_in(double lo, double hi, bool whole = false);
// The largest seed an option takes (any seed fits every generator it feeds).
constexpr double kMaxSeed = 4294967295.0;
// A numeric option checked with number_in(lo, hi), its default shown in --help.
template <typename T>
CLI::Option* add_number(CLI::App* app, const std::string& name, T& value, double lo, double hi,
                        const std::string& help = "") {
  return app->add_option(name, value, help)
      ->check(number_in(lo, hi, std::is_integral_v<T>))
      ->capture_default_str();
}

// --operating-point NAME: the model file's decision rule to use; `fallback` says which one the
// command takes when none is given.
CLI::Option* add_operating_point_option(CLI::App* app, std::string& point,
                                        const std::string& fallback);

// MALARIA_FIELD_MODEL, or the bundled field model when this build's models/ has it ("" if not).
std::string default_field_model();
// MALARIA_DETECTOR_MODEL, or the bundled cell detector when this build's models/ has it.
std::string default_detector_model();
// --segmenter detector|classic and --detector FILE, for the commands that screen fields.
struct SegmenterChoice {
  std::string segmenter = "detector";
  std::string detector;  // empty: the bundled one
};
void add_segmenter_options(CLI::App* app, SegmenterChoice& choice);
// MALARIA_DATA, or the build's MALARIA_DATA_ROOT/cell_images (../shared/data/cell_images).
std::string default_data_dir();
// How to get the NIH images, printed after a dataset error.
extern const char* const kGetDataHelp;

std::vector<Command> add_data_commands(CLI::App& app, const GlobalOptions& global);
std::vector<Command> add_train_commands(CLI::App& app, const GlobalOptions& global);
std::vector<Command> add_evaluate_commands(CLI::App& app, const GlobalOptions& global);
std::vector<Command> add_model_commands(CLI::App& app, const GlobalOptions& global);
std::vector<Command> add_serve_commands(CLI::App& app, const GlobalOptions& global);
std::vector<Command> add_explain_commands(CLI::App& app, const GlobalOptions& global);
std::vector<Command> add_field_commands(CLI::App& app, const GlobalOptions& global);
std::vector<Command> add_records_commands(CLI::App& app, const GlobalOptions& global);

// $MALARIA_STORE, else sqlite:$XDG_DATA_HOME/malaria/records.db (~/.local/share by default; the
// folder is created).
std::string default_store_url();

}  // namespace malaria::cli
