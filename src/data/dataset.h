// Dataset layout, scanning, patient ids and train/validation/test splits (NIH "cell_images").
#pragma once

#include <array>
#include <cstdint>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <vector>

namespace malaria {

// Label 1 is the positive class: a missed Parasitized cell is the costly error.
inline constexpr int kUninfected = 0;
inline constexpr int kParasitized = 1;
inline const std::array<std::string, 2> kClassNames = {"Uninfected", "Parasitized"};

struct Sample {
  std::string path;
  int label = 0;
  std::string patient;
};

// Raised for a dataset that cannot be used as given (wrong layout, empty class, strict failures).
class DatasetError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct DatasetSummary {
  std::array<size_t, 2> per_class{0, 0};
  size_t patients = 0;
  int min_width = 0, max_width = 0, min_height = 0, max_height = 0;
  std::vector<std::string> unreadable;  // skipped files, with the reason
  nlohmann::json to_json() const;
};

struct Dataset {
  std::string root;
  std::vector<Sample> samples;
  DatasetSummary summary;
};

struct ScanOptions {
  bool strict = false;  // an unreadable image is an error instead of a warning
  int threads = 0;      // decoding threads for the readability check; 0: all cores
};

// "C33P1thinF_IMG_20150619_114756a_cell_181.png" -> "C33P1": the part before "_IMG", and of
// an NIH name ("C" and a number) only the slide code before "thin", so the same patient imaged
// under two microscopes is one patient. Names without "_IMG" fall back to the file stem, so
// every file is its own patient.
std::string patient_id(const std::string& filename);

bool is_image_file(const std::filesystem::path& path);

// Lists DIR/Parasitized and DIR/Uninfected, decodes every image once to find unreadable files
// and the size range. Throws DatasetError for a wrong layout or an empty class.
Dataset scan_dataset(const std::string& root, const ScanOptions& options = {});

enum class SplitMode { Patient, Random };
SplitMode parse_split_mode(const std::string& name);
std::string to_string(SplitMode mode);

struct SplitFractions {
  double train = 0.6, val = 0.2, test = 0.2;
};

struct Split {
  std::vector<Sample> train, val, test;
};

// Patient mode: no patient appears in two parts, and patients are dealt so that each part gets
// close to its share of both classes. Random mode: stratified by class, like the original.
Split split_dataset(const std::vector<Sample>& samples, SplitMode mode,
                    const SplitFractions& fractions, uint64_t seed);

// `folds` parts of whole patients, each close to 1/folds of both classes (seeded shuffle).
std::vector<std::vector<Sample>> patient_folds(const std::vector<Sample>& samples, int folds,
                                               uint64_t seed);
// Fold `fold` (0-based) is the test part; the other folds' patients are split into training and
// validation (val_share of them), so validation never comes from the test fold.
Split cross_validation_split(const std::vector<Sample>& samples, int folds, int fold,
                             double val_share, uint64_t seed);

// CSV with header path,label,patient,split.
void write_split_csv(const Split& split, const std::string& path);
Split read_split_csv(const std::string& path);

nlohmann::json split_summary(const Split& split);

}  // namespace malaria
