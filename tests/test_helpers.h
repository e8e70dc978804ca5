// Shared test fixtures: temporary folders and small subsets of the real NIH images in ../shared.
#pragma once

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

namespace testing_support {

namespace fs = std::filesystem;

inline std::string data_root() { return MALARIA_DATA_ROOT; }

// Skips a test whose real images are absent; with MALARIA_REQUIRE_DATA set (CI does), fails
// instead, so coverage cannot vanish unnoticed.
#define MALARIA_REQUIRE_DIR(dir)                                                             \
  do {                                                                                       \
    if (!std::filesystem::is_directory(dir)) {                                               \
      if (std::getenv("MALARIA_REQUIRE_DATA")) FAIL() << "required data missing: " << (dir); \
      GTEST_SKIP() << "shared data not found at " << (dir);                                  \
    }                                                                                        \
  } while (0)
inline std::string cell_images() { return data_root() + "/cell_images"; }

// A fresh folder under the system temp dir, removed when the object dies.
class TempDir {
 public:
  TempDir() {
    std::random_device rd;
    path_ =
        fs::temp_directory_path() / ("malaria-test-" + std::to_string(rd()) + std::to_string(rd()));
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  std::string str() const { return path_.string(); }
  std::string operator/(const std::string& rel) const { return (path_ / rel).string(); }

 private:
  fs::path path_;
};

inline void write_bytes(const std::string& path, const std::string& bytes) {
  fs::create_directories(fs::path(path).parent_path());
  std::ofstream(path, std::ios::binary) << bytes;
}

inline std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// Links up to `per_class` real images of each class, taken from whole patients in file-name order,
// into DIR/{Parasitized,Uninfected}. Skips the test when the shared data is absent.
inline void link_subset(const std::string& dir, size_t per_class,
                        const std::string& source = cell_images()) {
  MALARIA_REQUIRE_DIR(source);
  for (const char* cls : {"Parasitized", "Uninfected"}) {
    std::vector<fs::path> files;
    for (const auto& e : fs::directory_iterator(fs::path(source) / cls)) files.push_back(e.path());
    std::sort(files.begin(), files.end());
    // Spread the pick over the whole list so many patients are present.
    const size_t step = std::max<size_t>(1, files.size() / per_class);
    fs::create_directories(fs::path(dir) / cls);
    for (size_t i = 0, n = 0; i < files.size() && n < per_class; i += step, ++n)
      fs::create_symlink(fs::absolute(files[i]), fs::path(dir) / cls / files[i].filename());
  }
}

}  // namespace testing_support
