// The single preprocessing path shared by train, evaluate, predict and serve:
// decode -> BGR to RGB -> resize to SxS -> scale to [0,1], planar (CHW) float.
#pragma once

#include <cstdint>
#include <opencv2/core.hpp>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace malaria {

class ImageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Largest image (in pixels) the decoder will allocate; bigger headers are refused before decoding.
inline constexpr size_t kMaxImagePixels = 64ull * 1024 * 1024;

// Must run before the first decode: OpenCV reads its pixel limit once.
void configure_image_limits();

// Format from the leading bytes ("png", "jpeg", "bmp", "tiff"), or "" when not an image we accept.
std::string sniff_image_format(const void* data, size_t size);

// 8-bit BGR image, or ImageError naming `name`.
cv::Mat decode_image(std::string_view bytes, const std::string& name);
cv::Mat read_image(const std::string& path);

// 8-bit RGB, size x size. Shrinks with INTER_AREA (as the dataset's 64 px copies were made) and
// enlarges with INTER_CUBIC, so small and large uploads land close to the training distribution.
cv::Mat resize_rgb(const cv::Mat& bgr, int size);

// Writes the 8-bit RGB image as 3 planes of floats in [0,1] to dst (3*size*size floats).
void to_chw_float(const cv::Mat& rgb, float* dst);

}  // namespace malaria
