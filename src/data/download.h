// `malaria download-data`: fetch the official NIH archive with resume, verify it, extract it.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>

namespace malaria {

inline constexpr const char* kDatasetUrl =
    "https://data.lhncbc.nlm.nih.gov/public/Malaria/cell_images.zip";
inline constexpr uint64_t kDatasetBytes = 353452851;
inline constexpr const char* kDatasetSha256 =
    "0a949556b2414159b5100192609805376654c4266d8d187be9b1922fad43c668";

class DownloadError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct DownloadOptions {
  std::string url = kDatasetUrl;
  std::string out_dir;
  uint64_t expected_bytes = kDatasetBytes;  // 0: do not check
  std::string expected_sha256 = kDatasetSha256;
  int attempts = 5;  // a cut connection is resumed from where it stopped
  bool keep_archive = false;
  bool progress = true;
};

// Downloads to OUT/cell_images.zip.part (resuming a previous part), checks size and SHA-256,
// then extracts to OUT/cell_images/{Parasitized,Uninfected}. A mismatch deletes the part and
// throws; nothing half-written is left under the final names. Returns OUT/cell_images.
std::string download_dataset(const DownloadOptions& options);

std::string sha256_file(const std::string& path);

}  // namespace malaria
