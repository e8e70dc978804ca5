// Damaged copies of a real smear field, for the quality verdict's tests: what each kind of
// damage must do to the verdict is asserted where they are used.
#pragma once

#include <map>
#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>
#include <string>

namespace testing_support {

inline std::map<std::string, cv::Mat> damaged_copies(const cv::Mat& field) {
  cv::Mat blank(field.size(), CV_8UC3, cv::mean(field)), noise(field.size(), CV_8UC3),
      text(field.size(), CV_8UC3, cv::Scalar::all(255)), grey, blurred, soft, cast, haze;
  cv::randu(noise, 0, 256);
  for (int line = 0; line < 30; ++line)
    cv::putText(text, "Lorem ipsum dolor sit amet, consectetur adipiscing elit",
                {10, 30 + 30 * line}, cv::FONT_HERSHEY_SIMPLEX, 0.8, cv::Scalar::all(0), 2);
  cv::cvtColor(field, grey, cv::COLOR_BGR2GRAY);
  cv::cvtColor(grey, grey, cv::COLOR_GRAY2BGR);
  cv::GaussianBlur(field, blurred, {0, 0}, 8);
  cv::GaussianBlur(field, soft, {0, 0}, 5);
  cv::Mat slightly_soft;
  cv::GaussianBlur(field, slightly_soft, {0, 0}, 3);
  cv::multiply(field, cv::Scalar(0.55, 1.0, 1.25), cast);  // a strong blue-to-red cast
  // A pinkish haze that rises across the field, as on the slides the issue describes.
  field.convertTo(haze, CV_32FC3);
  for (int r = 0; r < haze.rows; ++r) {
    const float a = 0.65f * r / haze.rows;
    for (int c = 0; c < haze.cols; ++c) {
      auto& px = haze.at<cv::Vec3f>(r, c);
      px = px * (1 - a) + cv::Vec3f(190, 160, 215) * a;
    }
  }
  haze.convertTo(haze, CV_8UC3);
  return {{"blank", blank},
          {"noise", noise},
          {"text", text},
          {"grey (unstained)", grey},
          {"overexposed", field * 4},
          {"underexposed", field * 0.08},
          {"defocused (sigma 8)", blurred},
          {"soft focus (sigma 5)", soft},
          {"soft focus (sigma 3)", slightly_soft},
          {"colour cast", cast},
          {"gradient haze", haze}};
}

}  // namespace testing_support
