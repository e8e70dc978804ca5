#include "data/image.h"

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

namespace malaria {

void configure_image_limits() {
  // OpenCV checks header dimensions against this before allocating: decompression-bomb guard.
  ::setenv("OPENCV_IO_MAX_IMAGE_PIXELS", std::to_string(kMaxImagePixels).c_str(), 0);
  ::setenv("OPENCV_IO_MAX_IMAGE_WIDTH", "65536", 0);
  ::setenv("OPENCV_IO_MAX_IMAGE_HEIGHT", "65536", 0);
}

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

cv::Mat decode_image(std::string_view bytes, const std::string& name) {
  if (bytes.empty()) throw ImageError(name + ": empty file");
  if (sniff_image_format(bytes.data(), bytes.size()).empty())
    throw ImageError(name + ": not a PNG, JPEG, BMP or TIFF image");
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

cv::Mat read_image(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ImageError(path + ": cannot open file");
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return decode_image(bytes, path);
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
