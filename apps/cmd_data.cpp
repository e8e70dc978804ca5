// Data subcommands: inspect, download-data.
#include <cstdio>
#include <iostream>
#include <memory>

#include "commands.h"
#include "data/dataset.h"
#include "data/download.h"

namespace malaria::cli {

namespace {

struct InspectOptions {
  std::string data = default_data_dir();
  bool strict = false;
  bool json = false;
};

int run_inspect(const InspectOptions& o) {
  ScanOptions scan;
  scan.strict = o.strict;
  const Dataset ds = scan_dataset(o.data, scan);
  const auto& s = ds.summary;
  if (o.json) {
    std::cout << s.to_json().dump(2) << '\n';
    return 0;
  }
  std::printf("%s\n", o.data.c_str());
  std::printf(
      "  Parasitized  %7zu images\n  Uninfected   %7zu images\n  total        %7zu images\n",
      s.per_class[kParasitized], s.per_class[kUninfected], s.per_class[0] + s.per_class[1]);
  std::printf("  patients     %7zu\n", s.patients);
  std::printf("  width        %d-%d px\n  height       %d-%d px\n", s.min_width, s.max_width,
              s.min_height, s.max_height);
  std::printf("  unreadable   %7zu\n", s.unreadable.size());
  for (const auto& u : s.unreadable) std::printf("    %s\n", u.c_str());
  return 0;
}

Command add_inspect(CLI::App& app) {
  auto o = std::make_shared<InspectOptions>();
  auto* sub =
      app.add_subcommand("inspect", "Count images, classes and patients in a dataset folder");
  sub->add_option("--data", o->data, "folder with Parasitized/ and Uninfected/")
      ->capture_default_str();
  sub->add_flag("--strict", o->strict, "treat an unreadable image as an error");
  sub->add_flag("--json", o->json, "print JSON");
  return {sub, [o] { return run_inspect(*o); }};
}

Command add_download(CLI::App& app) {
  auto o = std::make_shared<DownloadOptions>();
  auto* sub = app.add_subcommand("download-data",
                                 "Download, verify and unpack the NIH cell_images dataset");
  sub->add_option("--out", o->out_dir, "folder to put cell_images/ in")->required();
  sub->add_option("--url", o->url, "source of the archive")->capture_default_str();
  sub->add_option("--sha256", o->expected_sha256, "expected SHA-256 (empty: skip)")
      ->capture_default_str();
  add_number(sub, "--bytes", o->expected_bytes, 0, 1e15, "expected size (0: skip)");
  sub->add_flag("--keep-archive", o->keep_archive, "keep cell_images.zip after unpacking");
  return {sub, [o] {
            const std::string dir = download_dataset(*o);
            std::printf("dataset ready: %s\ntrain with: malaria train --data %s --out runs/first\n",
                        dir.c_str(), dir.c_str());
            return 0;
          }};
}

}  // namespace

std::vector<Command> add_data_commands(CLI::App& app, const GlobalOptions&) {
  return {add_inspect(app), add_download(app)};
}

}  // namespace malaria::cli
