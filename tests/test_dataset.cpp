#include <gtest/gtest.h>

#include <map>
#include <opencv2/imgcodecs.hpp>
#include <set>

#include "data/dataset.h"
#include "test_helpers.h"

using namespace malaria;
using testing_support::TempDir;

namespace {

void write_png(const std::string& path, int w = 20, int h = 20) {
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  cv::Mat m(h, w, CV_8UC3, cv::Scalar(10, 120, 200));
  ASSERT_TRUE(cv::imwrite(path, m));
}

// Synthetic samples: `patients` patients, each with `cells` cells; every third patient healthy.
std::vector<Sample> synthetic(int patients, int cells) {
  std::vector<Sample> out;
  for (int p = 0; p < patients; ++p)
    for (int c = 0; c < cells; ++c) {
      const int label = (p % 3 == 0) ? kUninfected : (c % 2 ? kParasitized : kUninfected);
      out.push_back({"P" + std::to_string(p) + "_IMG_" + std::to_string(c) + ".png", label,
                     "P" + std::to_string(p)});
    }
  return out;
}

}  // namespace

TEST(PatientId, IsThePartBeforeImg) {
  EXPECT_EQ(patient_id("/a/b/P7_IMG_20150918_144104_cell_162.png"), "P7");
  EXPECT_EQ(patient_id("fields-002_IMG_x_1.png"), "fields-002");
  EXPECT_EQ(patient_id("Cthin_IMG_1.png"), "Cthin");
  EXPECT_EQ(patient_id("no_marker_here.png"), "no_marker_here");
}

TEST(PatientId, IsTheSlideCodeOfNihNames) {
  EXPECT_EQ(patient_id("C33P1thinF_IMG_20150619_114756a_cell_181.png"), "C33P1");
  EXPECT_EQ(patient_id("/a/b/C100P61ThinF_IMG_20150918_144104_cell_162.png"), "C100P61");
  EXPECT_EQ(patient_id("C61P22N_ThinF_IMG_1.png"), "C61P22N");
  EXPECT_EQ(patient_id("C1_thinF_IMG_1.png"), "C1");
  // One patient under two microscopes.
  EXPECT_EQ(patient_id("C47P8thinOriginalOlympusCX21_IMG_20150717_172748_cell_158.png"), "C47P8");
  EXPECT_EQ(patient_id("C47P8thin_Original_Motic_IMG_20150714_093512_cell_169.png"), "C47P8");
}

TEST(ImageFiles, AcceptsImageExtensionsAndIgnoresJunk) {
  EXPECT_TRUE(is_image_file("a/x.png"));
  EXPECT_TRUE(is_image_file("a/x.JPG"));
  EXPECT_TRUE(is_image_file("a/x.tiff"));
  EXPECT_TRUE(is_image_file("a/x.bmp"));
  EXPECT_FALSE(is_image_file("a/Thumbs.db"));
  EXPECT_FALSE(is_image_file("a/.hidden.png"));
  EXPECT_FALSE(is_image_file("a/readme.txt"));
}

TEST(Scan, MissingClassFolderExplainsTheLayout) {
  TempDir dir;
  write_png(dir / "Parasitized/A_IMG_1.png");
  try {
    scan_dataset(dir.str());
    FAIL() << "expected DatasetError";
  } catch (const DatasetError& e) {
    EXPECT_NE(std::string(e.what()).find("Uninfected"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("expected layout"), std::string::npos);
  }
}

TEST(Scan, MissingRootIsAnError) {
  EXPECT_THROW(scan_dataset("/nonexistent/cell_images"), DatasetError);
}

TEST(Scan, EmptyClassIsAnError) {
  TempDir dir;
  write_png(dir / "Parasitized/A_IMG_1.png");
  std::filesystem::create_directories(dir / "Uninfected");
  testing_support::write_bytes(dir / "Uninfected/Thumbs.db", "junk");
  EXPECT_THROW(scan_dataset(dir.str()), DatasetError);
}

TEST(Scan, SkipsCorruptImagesAndCountsThemUnlessStrict) {
  TempDir dir;
  write_png(dir / "Parasitized/A_IMG_1.png", 30, 40);
  write_png(dir / "Parasitized/B_IMG_1.png", 50, 20);
  write_png(dir / "Uninfected/C_IMG_1.png");
  testing_support::write_bytes(dir / "Uninfected/C_IMG_2.png", "\x89PNG\r\n\x1a\n garbage");
  testing_support::write_bytes(dir / "Uninfected/.DS_Store", "junk");
  const Dataset ds = scan_dataset(dir.str());
  EXPECT_EQ(ds.samples.size(), 3u);
  EXPECT_EQ(ds.summary.per_class[kParasitized], 2u);
  EXPECT_EQ(ds.summary.per_class[kUninfected], 1u);
  EXPECT_EQ(ds.summary.patients, 3u);
  ASSERT_EQ(ds.summary.unreadable.size(), 1u);
  EXPECT_NE(ds.summary.unreadable[0].find("C_IMG_2.png"), std::string::npos);
  EXPECT_EQ(ds.summary.min_width, 20);
  EXPECT_EQ(ds.summary.max_width, 50);
  EXPECT_EQ(ds.summary.min_height, 20);
  EXPECT_EQ(ds.summary.max_height, 40);

  ScanOptions strict;
  strict.strict = true;
  EXPECT_THROW(scan_dataset(dir.str(), strict), DatasetError);
}

TEST(Split, PatientModeNeverSharesAPatientAndKeepsEveryImage) {
  const auto samples = synthetic(60, 20);
  const Split s = split_dataset(samples, SplitMode::Patient, {}, 7);
  EXPECT_EQ(s.train.size() + s.val.size() + s.test.size(), samples.size());
  std::map<std::string, std::set<int>> parts_of;
  int part = 0;
  for (const auto* v : {&s.train, &s.val, &s.test}) {
    for (const auto& x : *v) parts_of[x.patient].insert(part);
    ++part;
  }
  for (const auto& [patient, parts] : parts_of)
    EXPECT_EQ(parts.size(), 1u) << patient << " is in two splits";
}

TEST(Split, PatientModeIsStratifiedAndNearTheFractions) {
  const auto samples = synthetic(90, 20);
  const Split s = split_dataset(samples, SplitMode::Patient, {0.6, 0.2, 0.2}, 3);
  auto share = [](const std::vector<Sample>& v) {
    double p = 0;
    for (const auto& x : v) p += x.label == kParasitized;
    return p / v.size();
  };
  const double overall = share(samples);
  for (const auto* v : {&s.train, &s.val, &s.test}) EXPECT_NEAR(share(*v), overall, 0.05);
  EXPECT_NEAR(double(s.train.size()) / samples.size(), 0.6, 0.05);
  EXPECT_NEAR(double(s.val.size()) / samples.size(), 0.2, 0.05);
  EXPECT_NEAR(double(s.test.size()) / samples.size(), 0.2, 0.05);
}

TEST(Split, SameSeedSameSplitOtherSeedOtherSplit) {
  const auto samples = synthetic(60, 10);
  const Split a = split_dataset(samples, SplitMode::Patient, {}, 1);
  const Split b = split_dataset(samples, SplitMode::Patient, {}, 1);
  const Split c = split_dataset(samples, SplitMode::Patient, {}, 2);
  auto paths = [](const std::vector<Sample>& v) {
    std::set<std::string> out;
    for (const auto& x : v) out.insert(x.path);
    return out;
  };
  EXPECT_EQ(paths(a.test), paths(b.test));
  EXPECT_NE(paths(a.test), paths(c.test));
}

TEST(Split, RandomModeIsStratifiedByClass) {
  const auto samples = synthetic(30, 20);
  const Split s = split_dataset(samples, SplitMode::Random, {0.6, 0.2, 0.2}, 5);
  size_t par_total = 0, par_test = 0;
  for (const auto& x : samples) par_total += x.label == kParasitized;
  for (const auto& x : s.test) par_test += x.label == kParasitized;
  EXPECT_NEAR(double(par_test), 0.2 * par_total, 1.0);
  EXPECT_EQ(s.train.size() + s.val.size() + s.test.size(), samples.size());
}

TEST(Split, RejectsBadFractionsAndTooFewPatients) {
  const auto samples = synthetic(10, 5);
  EXPECT_THROW(split_dataset(samples, SplitMode::Patient, {0.5, 0.2, 0.2}, 1),
               std::invalid_argument);
  EXPECT_THROW(split_dataset(synthetic(1, 5), SplitMode::Patient, {}, 1), DatasetError);
}

TEST(Split, CsvRoundTrip) {
  TempDir dir;
  auto samples = synthetic(12, 4);
  samples[0].path = "odd, \"name\".png";
  const Split s = split_dataset(samples, SplitMode::Patient, {}, 9);
  write_split_csv(s, dir / "split.csv");
  const Split r = read_split_csv(dir / "split.csv");
  ASSERT_EQ(r.train.size(), s.train.size());
  ASSERT_EQ(r.test.size(), s.test.size());
  for (size_t i = 0; i < s.train.size(); ++i) {
    EXPECT_EQ(r.train[i].path, s.train[i].path);
    EXPECT_EQ(r.train[i].label, s.train[i].label);
    EXPECT_EQ(r.train[i].patient, s.train[i].patient);
  }
}

TEST(Scan, RealDataHasBothClassesAndManyPatients) {
  MALARIA_REQUIRE_DIR(testing_support::cell_images());
  const Dataset ds = scan_dataset(testing_support::cell_images());
  EXPECT_EQ(ds.summary.per_class[kParasitized], 11040u);
  EXPECT_EQ(ds.summary.per_class[kUninfected], 11040u);
  EXPECT_EQ(ds.summary.patients, 160u);  // 161 file-name prefixes: C47P8 under two microscopes
  EXPECT_TRUE(ds.summary.unreadable.empty());
}

TEST(Folds, EveryPatientInExactlyOneFoldAndClassesBalanced) {
  const auto samples = synthetic(60, 20);
  const auto folds = patient_folds(samples, 5, 42);
  ASSERT_EQ(folds.size(), 5u);
  std::map<std::string, int> fold_of;
  size_t total = 0;
  for (int k = 0; k < 5; ++k) {
    size_t parasitized = 0;
    for (const auto& s : folds[k]) {
      const auto [it, inserted] = fold_of.emplace(s.patient, k);
      EXPECT_TRUE(inserted || it->second == k) << s.patient << " is in two folds";
      parasitized += s.label == kParasitized;
    }
    total += folds[k].size();
    // 60 patients of 20 cells, a third of the cells Parasitized: about 240 cells, 80 of them
    // Parasitized, per fold.
    EXPECT_NEAR(folds[k].size(), 240.0, 40.0) << "fold " << k;
    EXPECT_NEAR(static_cast<double>(parasitized), 80.0, 20.0) << "fold " << k;
  }
  EXPECT_EQ(total, samples.size());
  EXPECT_EQ(fold_of.size(), 60u);
  EXPECT_THROW(patient_folds(synthetic(3, 5), 5, 1), DatasetError);  // fewer patients than folds
}

TEST(Folds, CrossValidationSplitTestsEachPatientOnceAndNeverValidatesOnTheTestFold) {
  const auto samples = synthetic(40, 10);
  std::map<std::string, int> tested;
  for (int k = 0; k < 4; ++k) {
    const Split split = cross_validation_split(samples, 4, k, 0.25, 7);
    std::set<std::string> test_patients, other;
    for (const auto& s : split.test) test_patients.insert(s.patient);
    for (const auto* part : {&split.train, &split.val})
      for (const auto& s : *part) other.insert(s.patient);
    for (const auto& p : test_patients) {
      EXPECT_FALSE(other.count(p)) << p << " is in the test fold and in training or validation";
      tested[p]++;
    }
    EXPECT_FALSE(split.val.empty());
    EXPECT_EQ(split.train.size() + split.val.size() + split.test.size(), samples.size());
  }
  EXPECT_EQ(tested.size(), 40u);
  for (const auto& [p, times] : tested) EXPECT_EQ(times, 1) << p;
}
