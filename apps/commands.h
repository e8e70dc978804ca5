// The `malaria` subcommands. Each file registers one group of subcommands: its own options
// struct, validated options, and a run function that calls the library.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>
#include <string>
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

// A number within [lo, hi]; NaN and infinities are refused, and bounds print readably.
CLI::Validator number_in(double lo, double hi);
// ../shared/data/cell_images, or MALARIA_DATA.
std::string default_data_dir();
// How to get the NIH images, printed after a dataset error.
extern const char* const kGetDataHelp;

std::vector<Command> add_data_commands(CLI::App& app, const GlobalOptions& global);
std::vector<Command> add_train_commands(CLI::App& app, const GlobalOptions& global);
std::vector<Command> add_evaluate_commands(CLI::App& app, const GlobalOptions& global);
std::vector<Command> add_model_commands(CLI::App& app, const GlobalOptions& global);
std::vector<Command> add_serve_commands(CLI::App& app, const GlobalOptions& global);

}  // namespace malaria::cli
