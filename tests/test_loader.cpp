#include <gtest/gtest.h>

#include <opencv2/imgcodecs.hpp>
#include <set>

#include "data/loader.h"
#include "test_helpers.h"

using namespace malaria;
using testing_support::TempDir;

namespace {
// 10 solid-colour images whose red channel encodes their index.
std::vector<Sample> make_images(const TempDir& dir, int n = 10) {
  std::vector<Sample> out;
  for (int i = 0; i < n; ++i) {
    const std::string path = dir / ("img" + std::to_string(i) + ".png");
    cv::imwrite(path, cv::Mat(12, 12, CV_8UC3, cv::Scalar(0, 0, 20 * i)));
    out.push_back({path, i % 2, "P" + std::to_string(i)});
  }
  return out;
}

// 8 px images, `batch` per batch: small enough that every test runs in milliseconds.
LoaderOptions small_loader(int batch, bool shuffle) {
  LoaderOptions o;
  o.image_size = 8;
  o.batch_size = batch;
  o.shuffle = shuffle;
  return o;
}

std::vector<std::vector<size_t>> epoch_items(BatchLoader& loader, int epoch, size_t first = 0) {
  loader.start_epoch(epoch, first);
  std::vector<std::vector<size_t>> out;
  while (auto b = loader.next()) out.push_back(b->items);
  return out;
}
}  // namespace

TEST(Loader, EveryImageOnceWithCorrectPixelsAndLabels) {
  TempDir dir;
  const auto samples = make_images(dir);
  LoaderOptions o = small_loader(4, true);
  o.workers = 2;
  BatchLoader loader(samples, o);
  EXPECT_EQ(loader.batches_per_epoch(), 3u);
  loader.start_epoch(0);
  std::multiset<size_t> seen;
  while (auto b = loader.next()) {
    ASSERT_EQ(b->pixels.size(), b->size() * 3 * 8 * 8);
    for (size_t k = 0; k < b->size(); ++k) {
      const size_t item = b->items[k];
      seen.insert(item);
      EXPECT_EQ(b->labels[k], float(samples[item].label));
      EXPECT_NEAR(b->pixels[k * 192], 20.0f * item / 255.0f, 1e-6);  // R plane, first pixel
    }
  }
  EXPECT_EQ(seen.size(), 10u);
  EXPECT_EQ(std::set<size_t>(seen.begin(), seen.end()).size(), 10u);
}

TEST(Loader, ShuffleDependsOnSeedAndEpochOnly) {
  TempDir dir;
  const auto samples = make_images(dir);
  LoaderOptions o = small_loader(3, true);
  o.seed = 11;
  BatchLoader a(samples, o), b(samples, o);
  EXPECT_EQ(epoch_items(a, 0), epoch_items(b, 0));
  EXPECT_NE(epoch_items(a, 0), epoch_items(a, 1));
}

TEST(Loader, ResumingMidEpochYieldsTheRemainingBatches) {
  TempDir dir;
  const auto samples = make_images(dir);
  LoaderOptions o = small_loader(3, true);
  o.augment = AugmentConfig();
  BatchLoader loader(samples, o);
  const auto full = epoch_items(loader, 2);
  const auto rest = epoch_items(loader, 2, 2);
  ASSERT_EQ(rest.size(), full.size() - 2);
  for (size_t i = 0; i < rest.size(); ++i) EXPECT_EQ(rest[i], full[i + 2]);
}

TEST(Loader, AnImageThatVanishesIsReportedByName) {
  TempDir dir;
  auto samples = make_images(dir, 4);
  std::filesystem::remove(samples[2].path);
  LoaderOptions o = small_loader(2, false);
  BatchLoader loader(samples, o);
  loader.start_epoch(0);
  ASSERT_TRUE(loader.next());
  try {
    loader.next();
    FAIL() << "expected an error";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("img2.png"), std::string::npos);
  }
}

TEST(Loader, CacheServesTheSamePixels) {
  TempDir dir;
  const auto samples = make_images(dir);
  ImageCache cache(8);
  LoaderOptions o = small_loader(10, false);
  BatchLoader plain(samples, o);
  o.cache = &cache;
  BatchLoader cached(samples, o);
  plain.start_epoch(0);
  cached.start_epoch(0);
  EXPECT_EQ(plain.next()->pixels, cached.next()->pixels);
  EXPECT_EQ(cache.bytes(), 10u * 8 * 8 * 3);
}
