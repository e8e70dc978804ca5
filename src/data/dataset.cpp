#include "data/dataset.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <fstream>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include "data/image.h"
#include "util/files.h"
#include "util/text.h"

namespace malaria {

namespace fs = std::filesystem;

nlohmann::json DatasetSummary::to_json() const {
  return {{"images", per_class[0] + per_class[1]},
          {kClassNames[kParasitized], per_class[kParasitized]},
          {kClassNames[kUninfected], per_class[kUninfected]},
          {"patients", patients},
          {"width", {min_width, max_width}},
          {"height", {min_height, max_height}},
          {"unreadable", unreadable}};
}

namespace {

std::string lowercase(std::string text) {
  for (char& c : text) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return text;
}

}  // namespace

std::string patient_id(const std::string& filename) {
  const std::string name = fs::path(filename).filename().string();
  const auto pos = name.find("_IMG");
  if (pos == std::string::npos || pos == 0) return fs::path(name).stem().string();
  std::string prefix = name.substr(0, pos);
  // NIH slide codes ("C47P8") come with an acquisition tag ("thinOriginalOlympusCX21",
  // "thin_Original_Motic"): one patient imaged under two microscopes must stay in one fold.
  const auto thin = lowercase(prefix).find("thin");
  const bool slide_code =
      prefix.size() > 1 && prefix[0] == 'C' && std::isdigit(static_cast<unsigned char>(prefix[1]));
  if (!slide_code || thin == std::string::npos || thin < 2) return prefix;
  prefix.resize(thin);
  while (prefix.back() == '_') prefix.pop_back();
  return prefix;
}

bool is_image_file(const fs::path& path) {
  const std::string name = path.filename().string();
  if (name.empty() || name[0] == '.') return false;
  const std::string ext = lowercase(path.extension().string());
  static const std::set<std::string> kExtensions = {".png", ".jpg", ".jpeg",
                                                    ".bmp", ".tif", ".tiff"};
  return kExtensions.count(ext) > 0;
}

namespace {

std::string layout_help(const std::string& root) {
  return "expected layout:\n  " + root + "/Parasitized/*.png\n  " + root +
         "/Uninfected/*.png\n(the NIH 'cell_images' folder; see README.md for how to get it)";
}

std::vector<Sample> list_class(const std::string& root, int label) {
  const fs::path dir = fs::path(root) / kClassNames[label];
  if (!fs::is_directory(dir))
    throw DatasetError("missing folder " + dir.string() + "\n" + layout_help(root));
  std::vector<Sample> out;
  for (const auto& entry : fs::directory_iterator(dir)) {
    // Links that loop, FIFOs and the like are kept: reading them reports a per-file error.
    std::error_code ec;
    if (entry.is_directory(ec) || !is_image_file(entry.path())) continue;
    out.push_back({entry.path().string(), label, patient_id(entry.path().string())});
  }
  std::sort(out.begin(), out.end(),
            [](const Sample& a, const Sample& b) { return a.path < b.path; });
  if (out.empty())
    throw DatasetError("no images in " + dir.string() + " (class " + kClassNames[label] +
                       " is empty)\n" + layout_help(root));
  return out;
}

}  // namespace

Dataset scan_dataset(const std::string& root, const ScanOptions& options) {
  if (!fs::is_directory(root))
    throw DatasetError("data folder not found: " + root + "\n" + layout_help(root));
  std::vector<Sample> all = list_class(root, kParasitized);
  for (auto& s : list_class(root, kUninfected)) all.push_back(std::move(s));

  // Decode everything once, in parallel: finds corrupt files before training starts.
  std::vector<cv::Size> sizes(all.size());
  std::vector<std::string> errors(all.size());
  std::atomic<size_t> next{0};
  const int threads =
      options.threads > 0 ? options.threads : std::max(1u, std::thread::hardware_concurrency());
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t)
    pool.emplace_back([&] {
      for (size_t i; (i = next++) < all.size();) {
        try {
          sizes[i] = read_image(all[i].path).size();
        } catch (const std::exception& e) {
          errors[i] = e.what();
        }
      }
    });
  for (auto& th : pool) th.join();

  Dataset ds;
  ds.root = root;
  DatasetSummary& sum = ds.summary;
  std::set<std::string> patients;
  bool first = true;
  for (size_t i = 0; i < all.size(); ++i) {
    if (!errors[i].empty()) {
      if (options.strict) throw DatasetError("unreadable image (--strict): " + errors[i]);
      spdlog::warn("skipping unreadable image {}", errors[i]);
      sum.unreadable.push_back(errors[i]);
      continue;
    }
    const cv::Size s = sizes[i];
    if (first) {
      sum.min_width = sum.max_width = s.width;
      sum.min_height = sum.max_height = s.height;
      first = false;
    }
    sum.min_width = std::min(sum.min_width, s.width);
    sum.max_width = std::max(sum.max_width, s.width);
    sum.min_height = std::min(sum.min_height, s.height);
    sum.max_height = std::max(sum.max_height, s.height);
    sum.per_class[all[i].label]++;
    patients.insert(all[i].patient);
    ds.samples.push_back(std::move(all[i]));
  }
  sum.patients = patients.size();
  for (int c : {kParasitized, kUninfected})
    if (sum.per_class[c] == 0)
      throw DatasetError("class " + kClassNames[c] + " has no readable images in " + root);
  return ds;
}

SplitMode parse_split_mode(const std::string& name) {
  if (name == "patient") return SplitMode::Patient;
  if (name == "random") return SplitMode::Random;
  throw std::invalid_argument("unknown split mode '" + name + "' (use patient or random)");
}

std::string to_string(SplitMode mode) { return mode == SplitMode::Patient ? "patient" : "random"; }

namespace {

void check_fractions(const SplitFractions& f) {
  if (f.train <= 0 || f.val < 0 || f.test < 0 || std::abs(f.train + f.val + f.test - 1.0) > 1e-6)
    throw std::invalid_argument("split fractions must be non-negative, train > 0, and sum to 1");
}

Split split_random(const std::vector<Sample>& samples, const SplitFractions& f, uint64_t seed) {
  Split out;
  std::mt19937_64 rng(seed);
  for (int label : {kUninfected, kParasitized}) {
    std::vector<Sample> cls;
    for (const auto& s : samples)
      if (s.label == label) cls.push_back(s);
    std::shuffle(cls.begin(), cls.end(), rng);
    const size_t n_test = static_cast<size_t>(std::llround(f.test * cls.size()));
    const size_t n_val = static_cast<size_t>(std::llround(f.val * cls.size()));
    for (size_t i = 0; i < cls.size(); ++i) {
      auto& part = i < n_test ? out.test : i < n_test + n_val ? out.val : out.train;
      part.push_back(cls[i]);
    }
  }
  return out;
}

// Deals patients one at a time to the part whose class quotas are furthest from being met,
// so every part gets about its share of both classes without splitting any patient.
std::map<std::string, int> deal_patients(const std::vector<Sample>& samples,
                                         const std::vector<double>& share, uint64_t seed) {
  std::map<std::string, std::array<size_t, 2>> counts;
  for (const auto& s : samples) counts[s.patient][s.label]++;
  std::vector<std::string> patients;
  for (const auto& [p, _] : counts) patients.push_back(p);
  std::mt19937_64 rng(seed);
  std::shuffle(patients.begin(), patients.end(), rng);

  std::array<double, 2> total{0, 0};
  for (const auto& [_, c] : counts) {
    total[0] += c[0];
    total[1] += c[1];
  }
  const int parts = static_cast<int>(share.size());
  std::vector<std::array<double, 2>> have(parts, {0, 0});
  std::map<std::string, int> part_of;
  for (const auto& p : patients) {
    const auto& c = counts[p];
    int best = 0;
    double best_gain = -1e300;
    for (int part = 0; part < parts; ++part) {
      if (share[part] <= 0) continue;
      // How much of this part's remaining quota the patient would fill, per class, minus overshoot.
      double gain = 0;
      for (int k = 0; k < 2; ++k) {
        if (total[k] == 0) continue;
        const double quota = share[part] * total[k];
        const double before = std::abs(quota - have[part][k]);
        const double after = std::abs(quota - have[part][k] - c[k]);
        gain += (before - after) / total[k];
      }
      if (gain > best_gain) best_gain = gain, best = part;
    }
    part_of[p] = best;
    have[best][0] += c[0];
    have[best][1] += c[1];
  }
  return part_of;
}

Split split_patients(const std::vector<Sample>& samples, const SplitFractions& f, uint64_t seed) {
  const auto part_of = deal_patients(samples, {f.train, f.val, f.test}, seed);
  Split out;
  for (const auto& s : samples) {
    const int part = part_of.at(s.patient);
    (part == 0 ? out.train : part == 1 ? out.val : out.test).push_back(s);
  }
  return out;
}

}  // namespace

Split split_dataset(const std::vector<Sample>& samples, SplitMode mode,
                    const SplitFractions& fractions, uint64_t seed) {
  check_fractions(fractions);
  Split out = mode == SplitMode::Patient ? split_patients(samples, fractions, seed)
                                         : split_random(samples, fractions, seed);
  if (out.train.empty()) throw DatasetError("split left the training set empty");
  if (fractions.val > 0 && out.val.empty())
    throw DatasetError("split left the validation set empty: too few " +
                       std::string(mode == SplitMode::Patient ? "patients" : "images"));
  if (fractions.test > 0 && out.test.empty())
    throw DatasetError("split left the test set empty: too few " +
                       std::string(mode == SplitMode::Patient ? "patients" : "images"));
  return out;
}

std::vector<std::vector<Sample>> patient_folds(const std::vector<Sample>& samples, int folds,
                                               uint64_t seed) {
  if (folds < 2) throw DatasetError("cross-validation needs at least 2 folds");
  const auto part_of = deal_patients(samples, std::vector<double>(folds, 1.0 / folds), seed);
  std::vector<std::vector<Sample>> out(folds);
  for (const auto& s : samples) out[part_of.at(s.patient)].push_back(s);
  for (int k = 0; k < folds; ++k)
    if (out[k].empty())
      throw DatasetError("too few patients for " + std::to_string(folds) + " folds (fold " +
                         std::to_string(k + 1) + " is empty)");
  return out;
}

Split cross_validation_split(const std::vector<Sample>& samples, int folds, int fold,
                             double val_share, uint64_t seed) {
  if (fold < 0 || fold >= folds) throw DatasetError("no fold " + std::to_string(fold + 1));
  auto parts = patient_folds(samples, folds, seed);
  std::vector<Sample> pool;
  for (int k = 0; k < folds; ++k)
    if (k != fold) pool.insert(pool.end(), parts[k].begin(), parts[k].end());
  Split split = split_dataset(pool, SplitMode::Patient, {1 - val_share, val_share, 0}, seed + 1);
  split.test = std::move(parts[fold]);
  return split;
}

void write_split_csv(const Split& split, const std::string& path) {
  std::ostringstream out;
  out << "path,label,patient,split\n";
  auto dump = [&](const std::vector<Sample>& part, const char* name) {
    for (const auto& s : part)
      out << csv_field(s.path) << ',' << kClassNames[s.label] << ',' << csv_field(s.patient) << ','
          << name << '\n';
  };
  dump(split.train, "train");
  dump(split.val, "val");
  dump(split.test, "test");
  write_text_atomic(path, out.str());
}

Split read_split_csv(const std::string& path) {
  std::istringstream in(read_text(path));
  std::string line;
  std::getline(in, line);
  if (line != "path,label,patient,split") throw DatasetError(path + ": not a split CSV");
  Split split;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    const auto f = parse_csv_line(line);
    if (f.size() != 4) throw DatasetError(path + ": malformed line: " + line);
    const int label = f[1] == kClassNames[kParasitized] ? kParasitized : kUninfected;
    Sample s{f[0], label, f[2]};
    (f[3] == "train" ? split.train : f[3] == "val" ? split.val : split.test).push_back(s);
  }
  return split;
}

nlohmann::json split_summary(const Split& split) {
  auto part = [](const std::vector<Sample>& v) {
    std::set<std::string> patients;
    size_t par = 0;
    for (const auto& s : v) patients.insert(s.patient), par += s.label == kParasitized;
    return nlohmann::json{{"images", v.size()},
                          {kClassNames[kParasitized], par},
                          {kClassNames[kUninfected], v.size() - par},
                          {"patients", patients.size()}};
  };
  return {{"train", part(split.train)}, {"val", part(split.val)}, {"test", part(split.test)}};
}

}  // namespace malaria
