// Fuzz target: loading an untrusted model file, as a cell classifier and as a cell detector.
// Anything but a clean ModelFileError is a bug.
#include <unistd.h>

#include <cstdint>
#include <fstream>
#include <opencv2/core.hpp>
#include <string>

#include "detect/detector.h"
#include "model/classifier.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path = "/tmp/malaria-fuzz-model-" + std::to_string(::getpid()) + ".pt";
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  }
  try {
    const auto model = malaria::Classifier::load(path);
    std::vector<float> pixels(3ull * model.image_size() * model.image_size(), 0.5f);
    model.predict(pixels.data(), 1);
  } catch (const malaria::ModelFileError&) {
  }
  try {
    const auto detector = malaria::CellDetector::load(path);
    detector.detect(cv::Mat(64, 64, CV_8UC3, cv::Scalar::all(200)));
  } catch (const malaria::ModelFileError&) {
  }
  return 0;
}
