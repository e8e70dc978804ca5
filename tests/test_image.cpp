#include <gtest/gtest.h>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "data/augment.h"
#include "data/image.h"
#include "test_helpers.h"

using namespace malaria;

namespace {
std::string encode(const cv::Mat& m, const std::string& ext) {
  std::vector<uint8_t> out;
  cv::imencode(ext, m, out);
  return std::string(out.begin(), out.end());
}
cv::Mat gradient(int w, int h) {
  cv::Mat m(h, w, CV_8UC3);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) m.at<cv::Vec3b>(y, x) = cv::Vec3b(x * 255 / w, y * 255 / h, 128);
  return m;
}
}  // namespace

TEST(Sniff, RecognisesFormatsByTheirBytes) {
  const cv::Mat m = gradient(8, 8);
  for (const auto& [ext, name] : std::vector<std::pair<std::string, std::string>>{
           {".png", "png"}, {".jpg", "jpeg"}, {".bmp", "bmp"}, {".tiff", "tiff"}}) {
    const auto bytes = encode(m, ext);
    EXPECT_EQ(sniff_image_format(bytes.data(), bytes.size()), name);
    EXPECT_EQ(decode_image(bytes, "x").size(), m.size()) << ext;
  }
  const std::string text = "<html>";
  EXPECT_EQ(sniff_image_format(text.data(), text.size()), "");
}

TEST(Decode, ClearErrorsForEmptyForeignAndTruncatedInput) {
  EXPECT_THROW(decode_image({}, "empty.png"), ImageError);
  const std::string text = "hello world";
  EXPECT_THROW(decode_image(text, "a.txt"), ImageError);
  auto png = encode(gradient(32, 32), ".png");
  png.resize(png.size() / 2);
  try {
    decode_image(png, "cut.png");
    FAIL();
  } catch (const ImageError& e) {
    EXPECT_NE(std::string(e.what()).find("cut.png"), std::string::npos);
  }
}

TEST(Decode, RefusesAbsurdDimensionsBeforeAllocating) {
  // A valid PNG header claiming 100000 x 100000 pixels, followed by almost nothing.
  auto png = encode(gradient(4, 4), ".png");
  auto put32 = [&](size_t at, uint32_t v) {
    png[at] = v >> 24, png[at + 1] = (v >> 16) & 255, png[at + 2] = (v >> 8) & 255,
    png[at + 3] = v & 255;
  };
  put32(16, 100000);
  put32(20, 100000);
  EXPECT_THROW(decode_image(png, "bomb.png"), ImageError);
}

TEST(Decode, ReadsTheSizeFromEveryFormatsHeader) {
  const cv::Mat image = gradient(53, 37);  // 53 wide, 37 high
  for (const char* ext : {".png", ".jpg", ".bmp", ".tif"}) {
    const ImageSize size = read_image_size(encode(image, ext), std::string("x") + ext);
    EXPECT_EQ(size.width, 53) << ext;
    EXPECT_EQ(size.height, 37) << ext;
  }
}

TEST(Decode, RefusesImagesOverTheLimitBeforeDecoding) {
  const std::string bytes = encode(gradient(300, 40), ".png");
  EXPECT_EQ(decode_image(bytes, "ok.png", {300, 300}).cols, 300);
  try {
    decode_image(bytes, "wide.png", {299, 4096});
    FAIL();
  } catch (const ImageError& e) {
    EXPECT_NE(std::string(e.what()).find("300x40 pixels is larger than the limit"),
              std::string::npos)
        << e.what();
  }
  // A header with no size (JPEG cut before its frame header) is refused, not decoded.
  EXPECT_THROW(decode_image(encode(gradient(40, 40), ".jpg").substr(0, 20), "cut.jpg"), ImageError);
}

TEST(ReadImage, RegularFilesOnly) {
  testing_support::TempDir dir;
  testing_support::write_bytes(dir / "a.png", encode(gradient(8, 8), ".png"));
  EXPECT_EQ(read_image(dir / "a.png").rows, 8);
  std::filesystem::create_symlink("loop.png", dir / "loop.png");
  EXPECT_THROW(read_image(dir / "loop.png"), ImageError);
  EXPECT_THROW(read_image("/dev/zero"), ImageError);
  EXPECT_THROW(read_image(dir.str()), ImageError);
}

TEST(Preprocess, ResizesToSquareRgbAndScalesToUnitRange) {
  cv::Mat bgr(37, 91, CV_8UC3, cv::Scalar(255, 0, 0));  // pure blue in BGR
  const cv::Mat rgb = resize_rgb(bgr, 64);
  ASSERT_EQ(rgb.size(), cv::Size(64, 64));
  ASSERT_EQ(rgb.type(), CV_8UC3);
  std::vector<float> chw(3 * 64 * 64);
  to_chw_float(rgb, chw.data());
  const int plane = 64 * 64;
  EXPECT_FLOAT_EQ(chw[0], 0.0f);              // R plane
  EXPECT_FLOAT_EQ(chw[plane], 0.0f);          // G plane
  EXPECT_FLOAT_EQ(chw[2 * plane + 5], 1.0f);  // B plane
  for (float v : chw) ASSERT_TRUE(v >= 0.0f && v <= 1.0f);
}

TEST(Preprocess, ShrinksLikeTheDatasetCopies) {
  // The 64 px dataset copies were made with INTER_AREA: shrinking our way must match exactly.
  const cv::Mat big = gradient(200, 160);
  cv::Mat expected, rgb;
  cv::cvtColor(big, rgb, cv::COLOR_BGR2RGB);
  cv::resize(rgb, expected, cv::Size(64, 64), 0, 0, cv::INTER_AREA);
  EXPECT_EQ(cv::norm(resize_rgb(big, 64), expected, cv::NORM_INF), 0.0);
}

TEST(Augment, DeterministicUnderASeedAndVariedAcrossSeeds) {
  const cv::Mat rgb = gradient(64, 64);
  const AugmentConfig cfg;
  const cv::Mat a = augment_image(rgb, cfg, 123);
  const cv::Mat b = augment_image(rgb, cfg, 123);
  EXPECT_EQ(cv::norm(a, b, cv::NORM_INF), 0.0);
  int differing = 0;
  for (uint64_t s = 1; s <= 10; ++s)
    differing += cv::norm(augment_image(rgb, cfg, s), a, cv::NORM_INF) > 0;
  EXPECT_GE(differing, 9);
  EXPECT_EQ(a.size(), rgb.size());
  EXPECT_EQ(a.type(), rgb.type());
}

TEST(Augment, DisabledIsIdentityAndFlipsAreExact) {
  const cv::Mat rgb = gradient(32, 32);
  EXPECT_EQ(cv::norm(augment_image(rgb, AugmentConfig::none(), 5), rgb, cv::NORM_INF), 0.0);
  AugmentConfig flip_only = AugmentConfig::none();
  flip_only.horizontal_flip = true;
  cv::Mat flipped;
  cv::flip(rgb, flipped, 1);
  int identical = 0, mirrored = 0;
  for (uint64_t s = 0; s < 40; ++s) {
    const cv::Mat out = augment_image(rgb, flip_only, s);
    identical += cv::norm(out, rgb, cv::NORM_INF) == 0;
    mirrored += cv::norm(out, flipped, cv::NORM_INF) == 0;
  }
  EXPECT_EQ(identical + mirrored, 40);
  EXPECT_GT(identical, 5);
  EXPECT_GT(mirrored, 5);
}

TEST(Augment, RotationKeepsTheCellCentredAndFillsBlack) {
  cv::Mat rgb(64, 64, CV_8UC3, cv::Scalar(200, 100, 50));
  AugmentConfig rot = AugmentConfig::none();
  rot.rotation_deg = 20;
  rot.zoom = 0.2;
  const cv::Mat out = augment_image(rgb, rot, 77);
  EXPECT_EQ(out.at<cv::Vec3b>(32, 32), cv::Vec3b(200, 100, 50));  // centre unchanged
  double min_v, max_v;
  cv::minMaxLoc(out.reshape(1), &min_v, &max_v);
  EXPECT_GE(min_v, 0);
  EXPECT_LE(max_v, 200);
}

TEST(Augment, ColorJitterChangesColoursButKeepsTheBackgroundBlack) {
  cv::Mat rgb(32, 32, CV_8UC3, cv::Scalar(0, 0, 0));
  cv::circle(rgb, {16, 16}, 10, cv::Scalar(200, 120, 160), -1);
  AugmentConfig jitter = AugmentConfig::none();
  jitter.color_jitter = 0.2;
  const cv::Mat out = augment_image(rgb, jitter, 9);
  EXPECT_EQ(out.at<cv::Vec3b>(0, 0), cv::Vec3b(0, 0, 0));
  const cv::Vec3b centre = out.at<cv::Vec3b>(16, 16);
  EXPECT_NE(centre, cv::Vec3b(200, 120, 160));
  for (int c = 0; c < 3; ++c) EXPECT_NEAR(centre[c], rgb.at<cv::Vec3b>(16, 16)[c], 0.2 * 200 + 1);
  EXPECT_EQ(cv::norm(augment_image(rgb, jitter, 9), out, cv::NORM_INF), 0.0);
}
