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

// The largest image a decoder may allocate, checked against the header before decoding: a few
// kilobytes of PNG can claim gigapixels (a decompression bomb).
struct ImageLimits {
  int max_width;
  int max_height;
};
// A single cell: real uploads are 40-400 px.
inline constexpr ImageLimits kCellImageLimits = {4096, 4096};
// A smear-field photo: up to 4000x3000 from a microscope camera, either way round.
inline constexpr ImageLimits kFieldImageLimits = {4096, 4096};

struct ImageSize {
  int width = 0;
  int height = 0;
};
// Width and height from the header of a PNG, JPEG, BMP or TIFF, without decoding; throws
// ImageError naming `name` when the header is missing or unreadable.
ImageSize read_image_size(std::string_view bytes, const std::string& name);

// Format from the leading bytes ("png", "jpeg", "bmp", "tiff"), or "" when not an image we accept.
std::string sniff_image_format(const void* data, size_t size);

// 8-bit BGR image, or ImageError naming `name` (also for headers beyond `limits`).
cv::Mat decode_image(std::string_view bytes, const std::string& name,
                     ImageLimits limits = kCellImageLimits);
// Reads a regular file of at most max_bytes and decodes it; anything else is an ImageError.
inline constexpr size_t kMaxImageFileBytes = 64u << 20;
cv::Mat read_image(const std::string& path, ImageLimits limits = kCellImageLimits);

// 8-bit RGB, size x size. Shrinks with INTER_AREA (as the dataset's 64 px copies were made) and
// enlarges with INTER_CUBIC, so small and large uploads land close to the training distribution.
cv::Mat resize_rgb(const cv::Mat& bgr, int size);

// Writes the 8-bit RGB image as 3 planes of floats in [0,1] to dst (3*size*size floats).
void to_chw_float(const cv::Mat& rgb, float* dst);

}  // namespace malaria
