#include <gtest/gtest.h>

#include <limits>

#include "model/architecture.h"
#include "model/classifier.h"
#include "model/model.h"
#include "test_helpers.h"

using namespace malaria;
using testing_support::TempDir;

TEST(Architecture, SeedMatchesKerasParameterCountAt128) {
  const auto s = summarize_architecture("seed", 128);
  EXPECT_EQ(s.total_params, 4287937);
  EXPECT_EQ(s.trainable_params, 4287873);
  EXPECT_EQ(s.non_trainable_params, 64);
  EXPECT_EQ(s.layers.back().output_shape, std::vector<int64_t>{1});
}

TEST(Architecture, CellnetIsFarSmallerThanSeed) {
  const auto ours = summarize_architecture("cellnet", 64);
  EXPECT_LT(ours.total_params * 4, summarize_architecture("seed", 64).total_params);
  EXPECT_LT(ours.total_params * 15, summarize_architecture("seed", 128).total_params);
  // Global average pooling: the parameter count does not depend on the input size.
  EXPECT_EQ(summarize_architecture("cellnet", 128).total_params, ours.total_params);
  const std::string table = format_summary(ours);
  EXPECT_NE(table.find("Total params: " + std::to_string(ours.total_params)), std::string::npos);
}

TEST(Architecture, UnknownNamesAndSizesAreRejected) {
  EXPECT_THROW(build_model("resnet9000", 64), std::invalid_argument);
  EXPECT_THROW(build_model("seed", 60), std::invalid_argument);
}

TEST(Architecture, ForwardGivesOneLogitPerImage) {
  for (const auto& arch : architecture_names()) {
    auto model = build_model(arch, 64);
    model->eval();
    torch::NoGradGuard no_grad;
    EXPECT_EQ(model->forward(torch::rand({3, 3, 64, 64})).sizes(), (std::vector<int64_t>{3, 1}))
        << arch;
  }
}

namespace {
nlohmann::json test_metadata(const std::string& arch, int size) {
  return {{"format", kModelFormat}, {"format_version", kModelFormatVersion},
          {"arch", arch},           {"image_size", size},
          {"threshold", 0.42},      {"name", "unit"}};
}
}  // namespace

TEST(ModelFile, RoundTripKeepsWeightsAndMetadata) {
  TempDir dir;
  torch::manual_seed(3);
  auto model = build_model("cellnet", 32);
  // Move BatchNorm statistics away from their defaults so that buffers are checked too.
  model->train();
  model->forward(torch::rand({8, 3, 32, 32}));
  model->eval();
  save_model_file(dir / "m.pt", model, test_metadata("cellnet", 32));
  // Nothing but the model file: the temporary it was written through is gone.
  std::vector<std::string> files;
  for (const auto& e : std::filesystem::directory_iterator(dir.str()))
    files.push_back(e.path().filename().string());
  EXPECT_EQ(files, std::vector<std::string>{"m.pt"});

  const Classifier loaded = Classifier::load(dir / "m.pt");
  EXPECT_EQ(loaded.arch(), "cellnet");
  EXPECT_EQ(loaded.image_size(), 32);
  EXPECT_DOUBLE_EQ(loaded.threshold(), 0.42);
  const auto x = torch::rand({4, 3, 32, 32});
  torch::NoGradGuard no_grad;
  const auto expected = torch::sigmoid(model->forward(x)).reshape({-1});
  const auto got = loaded.predict(x.data_ptr<float>(), 4);
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(got[i], expected[i].item<float>(), 1e-5);
}

TEST(ModelFile, MissingTruncatedAndForeignFilesGiveClearErrors) {
  TempDir dir;
  auto model = build_model("cellnet", 32);
  save_model_file(dir / "m.pt", model, test_metadata("cellnet", 32));
  const std::string bytes = testing_support::read_bytes(dir / "m.pt");

  auto message = [](const std::string& path) {
    try {
      Classifier::load(path);
    } catch (const ModelFileError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message(dir / "absent.pt").find("not found"), std::string::npos);

  testing_support::write_bytes(dir / "cut.pt", bytes.substr(0, bytes.size() / 2));
  EXPECT_NE(message(dir / "cut.pt").find("truncated or corrupt"), std::string::npos);

  testing_support::write_bytes(dir / "notes.txt", "these are not weights");
  EXPECT_NE(message(dir / "notes.txt").find("not a malaria model file"), std::string::npos);

  // A genuine LibTorch archive that is not ours.
  torch::serialize::OutputArchive other;
  other.write("w", torch::ones({2}));
  other.save_to(dir / "other.pt");
  EXPECT_NE(message(dir / "other.pt").find("not a malaria model file"), std::string::npos);

  // Right metadata, wrong weights.
  auto seed = build_model("seed", 32);
  save_model_file(dir / "mismatch.pt", seed, test_metadata("cellnet", 32));
  EXPECT_NE(message(dir / "mismatch.pt").find("do not match"), std::string::npos);
  // Same names, other shapes: the seed network's dense layer at 64 px read as one at 32 px
  // (LibTorch alone would load it and fail, or worse, at the first prediction).
  auto seed64 = build_model("seed", 64);
  save_model_file(dir / "shape.pt", seed64, test_metadata("seed", 32));
  EXPECT_NE(message(dir / "shape.pt").find("shape"), std::string::npos)
      << message(dir / "shape.pt");
}

TEST(ModelFile, WeightsThatAreNotFiniteAreRefused) {
  TempDir dir;
  auto model = build_model("cellnet", 32);
  {
    torch::NoGradGuard no_grad;
    model->parameters()[0].view(-1)[0] = std::numeric_limits<float>::quiet_NaN();
  }
  save_model_file(dir / "nan.pt", model, test_metadata("cellnet", 32));
  try {
    Classifier::load(dir / "nan.pt");
    FAIL() << "a model with NaN weights was loaded";
  } catch (const ModelFileError& e) {
    EXPECT_NE(std::string(e.what()).find("not finite"), std::string::npos) << e.what();
  }
}

TEST(ModelFile, MetadataOfTheWrongShapeIsAClearError) {
  TempDir dir;
  auto model = build_model("cellnet", 32);
  for (const auto& meta :
       {nlohmann::json::array({1, 2}), nlohmann::json{{"format", kModelFormat}},
        nlohmann::json{{"format", kModelFormat}, {"format_version", 1}, {"arch", "cellnet"}},
        nlohmann::json{{"format", kModelFormat},
                       {"format_version", 1},
                       {"arch", "cellnet"},
                       {"image_size", "big"}},
        nlohmann::json{
            {"format", kModelFormat}, {"format_version", 1}, {"arch", 7}, {"image_size", 32}}}) {
    save_model_file(dir / "m.pt", model, meta);
    EXPECT_THROW(Classifier::load(dir / "m.pt"), ModelFileError) << meta.dump();
  }
}

TEST(ModelFile, FoldingBatchNormKeepsPredictions) {
  torch::manual_seed(5);
  auto model = build_model("cellnet", 32);
  model->train();
  for (int i = 0; i < 3; ++i)
    model->forward(torch::rand({8, 3, 32, 32}));  // non-trivial statistics
  model->eval();
  auto folded = fold_batchnorm(model);
  int batchnorms = 0;
  for (const auto& m : folded->features->children())
    batchnorms += m->as<torch::nn::BatchNorm2d>() != nullptr;
  EXPECT_EQ(batchnorms, 0);
  torch::NoGradGuard no_grad;
  const auto x = torch::rand({6, 3, 32, 32});
  EXPECT_TRUE(torch::allclose(model->forward(x), folded->forward(x), 1e-4, 1e-5));
}

namespace {
// A cellnet with its BatchNorm statistics moved off their defaults, saved to `path`.
CellClassifier saved_cellnet(const std::string& path, uint64_t seed) {
  torch::manual_seed(seed);
  auto model = build_model("cellnet", 32);
  model->train();
  model->forward(torch::rand({8, 3, 32, 32}));
  model->eval();
  save_model_file(path, model, test_metadata("cellnet", 32));
  return model;
}
}  // namespace

TEST(ModelFile, EnsembleAveragesItsMembersLogits) {
  TempDir dir;
  auto a = saved_cellnet(dir / "a.pt", 1), b = saved_cellnet(dir / "b.pt", 2);
  nlohmann::json meta = test_metadata("cellnet", 32);
  write_ensemble_file({dir / "a.pt", dir / "b.pt"}, dir / "ab.pt", meta);
  const Classifier ensemble = Classifier::load(dir / "ab.pt");
  EXPECT_EQ(ensemble.members(), 2u);
  EXPECT_EQ(ensemble.metadata()["ensemble"]["members"], 2);
  const auto x = torch::rand({3, 3, 32, 32});
  const auto got = ensemble.logits(x.data_ptr<float>(), 3);
  torch::NoGradGuard no_grad;
  const auto expected = ((a->forward(x) + b->forward(x)) / 2).reshape({-1});
  for (int i = 0; i < 3; ++i) EXPECT_NEAR(got[i], expected[i].item<float>(), 1e-4);
  // Grad-CAM works over the members; a copy keeps both members.
  EXPECT_EQ(ensemble.explain(x.data_ptr<float>(), 3).size(), 3u);
  write_model_copy(dir / "ab.pt", dir / "copy.pt", {{"name", "copy"}});
  EXPECT_EQ(Classifier::load(dir / "copy.pt").members(), 2u);
  // Another architecture cannot join.
  auto seed_net = build_model("seed", 32);
  save_model_file(dir / "s.pt", seed_net, test_metadata("seed", 32));
  EXPECT_THROW(write_ensemble_file({dir / "a.pt", dir / "s.pt"}, dir / "bad.pt", meta),
               std::invalid_argument);
}

TEST(ModelFile, EnsembleWithAWrongMemberCountIsRefused) {
  TempDir dir;
  auto a = saved_cellnet(dir / "a.pt", 1);
  // Written by hand: metadata that promises more members than the archive holds, or absurdly many.
  auto write = [&](const std::string& path, nlohmann::json members) {
    nlohmann::json meta = test_metadata("cellnet", 32);
    meta["ensemble"] = {{"members", members}};
    torch::serialize::OutputArchive archive, member;
    archive.write("malaria_metadata", c10::IValue(meta.dump()));
    a->save(member);
    archive.write("member1", member);
    archive.write("member2", member);
    archive.save_to(path);
  };
  write(dir / "three.pt", 3);
  write(dir / "many.pt", 1000);
  write(dir / "text.pt", "two");
  write(dir / "two.pt", 2);
  EXPECT_THROW(Classifier::load(dir / "three.pt"), ModelFileError);  // member 3 is missing
  EXPECT_THROW(Classifier::load(dir / "many.pt"), ModelFileError);
  EXPECT_THROW(Classifier::load(dir / "text.pt"), ModelFileError);
  EXPECT_EQ(Classifier::load(dir / "two.pt").members(), 2u);
}
