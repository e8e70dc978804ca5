// Fuzz target: format sniffing, header size reading and decoding of untrusted image bytes.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "data/image.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  malaria::sniff_image_format(data, size);
  try {
    malaria::read_image_size(bytes, "fuzz");
  } catch (const malaria::ImageError&) {
  }
  try {
    const cv::Mat image = malaria::decode_image(bytes, "fuzz", {512, 512});
    if (image.cols > 512 || image.rows > 512) __builtin_trap();  // the limit must hold
    malaria::resize_rgb(image, 32);
  } catch (const malaria::ImageError&) {
  }
  return 0;
}
