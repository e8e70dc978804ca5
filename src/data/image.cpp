#include "data/image.h"

#include <climits>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <optional>

#include "util/files.h"

namespace malaria {

std::string sniff_image_format(const void* data, size_t size) {
  const auto* b = static_cast<const unsigned char*>(data);
  auto starts = [&](const char* magic, size_t n) {
    return size >= n && std::memcmp(b, magic, n) == 0;
  };
  if (starts("\x89PNG\r\n\x1a\n", 8)) return "png";
  if (starts("\xFF\xD8\xFF", 3)) return "jpeg";
  if (starts("BM", 2) && size >= 26) return "bmp";
  if (starts("II*\0", 4) || starts("MM\0*", 4)) return "tiff";
  return "";
}

namespace {

uint32_t big_endian(const unsigned char* p, int n) {
  uint32_t v = 0;
  for (int i = 0; i < n; ++i) v = (v << 8) | p[i];
  return v;
}
uint32_t little_endian(const unsigned char* p, int n) {
  uint32_t v = 0;
  for (int i = n - 1; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

std::optional<ImageSize> png_size(const unsigned char* b, size_t n) {
  if (n < 24 || std::memcmp(b + 12, "IHDR", 4) != 0) return std::nullopt;
  const uint32_t w = big_endian(b + 16, 4), h = big_endian(b + 20, 4);
  if (w > INT32_MAX || h > INT32_MAX) return ImageSize{INT32_MAX, INT32_MAX};
  return ImageSize{static_cast<int>(w), static_cast<int>(h)};
}

// Walks the marker segments up to the first start-of-frame, which holds the size.
std::optional<ImageSize> jpeg_size(const unsigned char* b, size_t n) {
  size_t i = 2;
  while (i + 4 <= n) {
    if (b[i] != 0xFF) return std::nullopt;
    const unsigned char marker = b[i + 1];
    if (marker == 0xFF) {  // fill byte
      ++i;
      continue;
    }
    if (marker == 0x01 || (marker >= 0xD0 && marker <= 0xD8)) {  // no length field
      i += 2;
      continue;
    }
    const size_t length = big_endian(b + i + 2, 2);
    if (length < 2) return std::nullopt;
    const bool start_of_frame =
        marker >= 0xC0 && marker <= 0xCF && marker != 0xC4 && marker != 0xC8 && marker != 0xCC;
    if (start_of_frame) {
      if (i + 9 > n) return std::nullopt;
      return ImageSize{static_cast<int>(big_endian(b + i + 7, 2)),
                       static_cast<int>(big_endian(b + i + 5, 2))};
    }
    if (marker == 0xDA || marker == 0xD9) return std::nullopt;  // scan data before any frame
    i += 2 + length;
  }
  return std::nullopt;
}

std::optional<ImageSize> bmp_size(const unsigned char* b, size_t n) {
  if (n < 26) return std::nullopt;
  if (little_endian(b + 14, 4) == 12)  // OS/2 core header: 16-bit sizes
    return ImageSize{static_cast<int>(little_endian(b + 18, 2)),
                     static_cast<int>(little_endian(b + 20, 2))};
  const auto w = static_cast<int32_t>(little_endian(b + 18, 4));
  const auto h = static_cast<int32_t>(little_endian(b + 22, 4));  // negative: rows top-down
  if (w == INT32_MIN || h == INT32_MIN) return ImageSize{INT32_MAX, INT32_MAX};
  return ImageSize{std::abs(w), std::abs(h)};
}

// The first image file directory, which is the page OpenCV decodes.
std::optional<ImageSize> tiff_size(const unsigned char* b, size_t n) {
  const bool little = b[0] == 'I';
  auto u = [&](size_t at, int bytes) -> uint32_t {
    return little ? little_endian(b + at, bytes) : big_endian(b + at, bytes);
  };
  if (n < 8) return std::nullopt;
  const size_t ifd = u(4, 4);
  if (ifd + 2 > n) return std::nullopt;
  const size_t entries = u(ifd, 2);
  ImageSize size;
  for (size_t e = 0; e < entries && ifd + 2 + 12 * (e + 1) <= n; ++e) {
    const size_t at = ifd + 2 + 12 * e;
    const uint32_t tag = u(at, 2), type = u(at + 2, 2);
    const uint32_t value = type == 3 ? u(at + 8, 2) : u(at + 8, 4);  // SHORT or LONG
    const int clamped = value > INT32_MAX ? INT32_MAX : static_cast<int>(value);
    if (tag == 256) size.width = clamped;
    if (tag == 257) size.height = clamped;
  }
  if (size.width == 0 || size.height == 0) return std::nullopt;
  return size;
}

}  // namespace

ImageSize read_image_size(std::string_view bytes, const std::string& name) {
  const auto* b = reinterpret_cast<const unsigned char*>(bytes.data());
  const std::string format = sniff_image_format(bytes.data(), bytes.size());
  std::optional<ImageSize> size;
  if (format == "png") size = png_size(b, bytes.size());
  if (format == "jpeg") size = jpeg_size(b, bytes.size());
  if (format == "bmp") size = bmp_size(b, bytes.size());
  if (format == "tiff") size = tiff_size(b, bytes.size());
  if (format.empty()) throw ImageError(name + ": not a PNG, JPEG, BMP or TIFF image");
  if (!size || size->width <= 0 || size->height <= 0)
    throw ImageError(name + ": cannot read the image size from its " + format +
                     " header (corrupt or truncated)");
  return *size;
}

cv::Mat decode_image(std::string_view bytes, const std::string& name, ImageLimits limits) {
  if (bytes.empty()) throw ImageError(name + ": empty file");
  const ImageSize size = read_image_size(bytes, name);
  if (size.width > limits.max_width || size.height > limits.max_height)
    throw ImageError(name + ": image of " + std::to_string(size.width) + "x" +
                     std::to_string(size.height) + " pixels is larger than the limit of " +
                     std::to_string(limits.max_width) + "x" + std::to_string(limits.max_height));
  cv::Mat image;
  try {
    image = cv::imdecode(
        cv::Mat(1, static_cast<int>(bytes.size()), CV_8UC1, const_cast<char*>(bytes.data())),
        cv::IMREAD_COLOR);
  } catch (const cv::Exception& e) {
    throw ImageError(name + ": cannot decode image (" + e.msg + ")");
  }
  if (image.empty()) throw ImageError(name + ": cannot decode image (corrupt or truncated)");
  return image;
}

cv::Mat read_image(const std::string& path, ImageLimits limits) {
  std::string bytes;
  try {
    bytes = read_regular_file(path, kMaxImageFileBytes);
  } catch (const FileError& e) {
    throw ImageError(e.what());
  }
  return decode_image(bytes, path, limits);
}

cv::Mat resize_rgb(const cv::Mat& bgr, int size) {
  cv::Mat rgb;
  cv::cvtColor(bgr, rgb, cv::COLOR_BGR2RGB);
  if (rgb.rows == size && rgb.cols == size) return rgb;
  const bool shrinking = rgb.rows * rgb.cols > size * size;
  cv::Mat out;
  cv::resize(rgb, out, cv::Size(size, size), 0, 0, shrinking ? cv::INTER_AREA : cv::INTER_CUBIC);
  return out;
}

void to_chw_float(const cv::Mat& rgb, float* dst) {
  CV_Assert(rgb.type() == CV_8UC3 && rgb.isContinuous());
  const int plane = rgb.rows * rgb.cols;
  const uint8_t* src = rgb.ptr<uint8_t>();
  constexpr float kScale = 1.0f / 255.0f;
  for (int i = 0; i < plane; ++i) {
    dst[i] = src[3 * i] * kScale;
    dst[plane + i] = src[3 * i + 1] * kScale;
    dst[2 * plane + i] = src[3 * i + 2] * kScale;
  }
}

}  // namespace malaria
