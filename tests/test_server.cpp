// Exercises every route and every bad input of the real server binary over HTTP.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <atomic>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "eval/evaluate.h"
#include "model/classifier.h"
#include "serve/work_queue.h"
#include "server_fixture.h"
#include "test_helpers.h"

using json = nlohmann::json;
using testing_support::read_bytes;
using testing_support::ServerProcess;

namespace {

std::vector<std::string> real_images(size_t per_class) {
  const std::string root = testing_support::data_root() + "/cell_images_128";
  std::vector<std::string> out;
  for (const char* cls : {"Parasitized", "Uninfected"}) {
    std::vector<std::string> files;
    for (const auto& e : std::filesystem::directory_iterator(root + "/" + cls))
      files.push_back(e.path().string());
    std::sort(files.begin(), files.end());
    for (size_t i = 0; i < per_class && i * 37 < files.size(); ++i) out.push_back(files[i * 37]);
  }
  return out;
}

httplib::MultipartFormDataItems form(
    const std::vector<std::pair<std::string, std::string>>& files) {
  httplib::MultipartFormDataItems items;
  for (const auto& [name, bytes] : files) items.push_back({"file", bytes, name, "image/png"});
  return items;
}

std::string png_claiming(int w, int h) {
  std::vector<uint8_t> png;
  cv::imencode(".png", cv::Mat(4, 4, CV_8UC3, cv::Scalar(1, 2, 3)), png);
  auto put32 = [&](size_t at, uint32_t v) {
    png[at] = v >> 24, png[at + 1] = (v >> 16) & 255, png[at + 2] = (v >> 8) & 255,
    png[at + 3] = v & 255;
  };
  put32(16, w);
  put32(20, h);
  return std::string(png.begin(), png.end());
}

std::string base64_decode(const std::string& text) {
  static const std::string alphabet =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  uint32_t buffer = 0;
  int bits = 0;
  for (char ch : text) {
    const auto v = alphabet.find(ch);
    if (v == std::string::npos) continue;  // padding
    buffer = (buffer << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((buffer >> bits) & 0xff));
    }
  }
  return out;
}

struct ServerTestOptions {
  static std::vector<std::string> args() {
    return {"--max-files", "40", "--max-upload-mb", "2", "--field-model", MALARIA_TEST_FIELD_MODEL};
  }
};
class ServerTest : public testing_support::SharedServerTest<ServerTestOptions> {};

}  // namespace

TEST_F(ServerTest, HealthReadyModelAndDocs) {
  auto c = server_->client();
  auto health = c.Get("/health");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200);
  EXPECT_EQ(json::parse(health->body)["status"], "ok");
  auto ready = c.Get("/ready");
  ASSERT_TRUE(ready);
  EXPECT_EQ(ready->status, 200);
  EXPECT_TRUE(json::parse(ready->body)["ready"].get<bool>());

  auto model = c.Get("/api/v1/model");
  ASSERT_TRUE(model);
  ASSERT_EQ(model->status, 200);
  const auto meta = json::parse(model->body);
  EXPECT_EQ(meta["arch"], malaria::Classifier::load(MALARIA_TEST_MODEL).arch());
  EXPECT_TRUE(meta.contains("id"));
  EXPECT_TRUE(meta.contains("validation"));

  auto openapi = c.Get("/openapi.json");
  ASSERT_TRUE(openapi);
  ASSERT_EQ(openapi->status, 200);
  const auto spec = json::parse(openapi->body);
  for (const char* path : {"/api/v1/predict", "/api/v1/screen", "/api/v1/model", "/predict/",
                           "/health", "/ready", "/metrics", "/docs", "/"})
    EXPECT_TRUE(spec["paths"].contains(path)) << path;

  auto docs = c.Get("/docs");
  ASSERT_TRUE(docs);
  ASSERT_EQ(docs->status, 200);
  EXPECT_NE(docs->body.find("swagger-ui-bundle.js"), std::string::npos);
  auto bundle = c.Get("/docs/swagger-ui-bundle.js");
  ASSERT_TRUE(bundle);
  ASSERT_EQ(bundle->status, 200);
  EXPECT_GT(bundle->body.size(), 100000u);  // the real Swagger UI, served from the binary

  auto page = c.Get("/");
  ASSERT_TRUE(page);
  ASSERT_EQ(page->status, 200);
  EXPECT_NE(page->body.find("action=\"/predict/\""), std::string::npos);
  EXPECT_NE(page->body.find("does not"), std::string::npos);  // the assistive-use statement
  EXPECT_EQ(page->get_header_value("X-Content-Type-Options"), "nosniff");
  EXPECT_NE(page->get_header_value("Content-Security-Policy").find("default-src 'self'"),
            std::string::npos);
}

TEST_F(ServerTest, PredictMatchesTheCommandLinePathOnRealImages) {
  const auto paths = real_images(6);
  std::vector<std::pair<std::string, std::string>> files;
  for (const auto& p : paths)
    files.push_back({std::filesystem::path(p).filename().string(), read_bytes(p)});
  auto c = server_->client();
  auto res = c.Post("/api/v1/predict", form(files));
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200) << res->body;
  EXPECT_EQ(res->get_header_value("Cache-Control"), "no-store");
  const auto body = json::parse(res->body);
  const malaria::Classifier model = malaria::Classifier::load(MALARIA_TEST_MODEL);
  const auto expected = malaria::predict_files(model, paths, model.operating_point());
  ASSERT_EQ(body["results"].size(), paths.size());
  for (size_t i = 0; i < paths.size(); ++i) {
    const auto& r = body["results"][i];
    EXPECT_EQ(r["filename"], files[i].first);
    EXPECT_NEAR(r["probability_parasitized"].get<double>(), expected[i].probability, 1e-5);
    EXPECT_EQ(r["label"], expected[i].label);
    EXPECT_GE(r["confidence"].get<double>(), 0.5);
    EXPECT_TRUE(r["decision"] == r["label"] || r["decision"] == "Inconclusive");
  }
  EXPECT_EQ(body["summary"]["cells"], paths.size());

  // A raw image body works too, whatever Content-Type claims.
  auto raw = c.Post("/api/v1/predict", files[0].second, "application/octet-stream");
  ASSERT_TRUE(raw);
  ASSERT_EQ(raw->status, 200);
  EXPECT_NEAR(json::parse(raw->body)["results"][0]["probability_parasitized"].get<double>(),
              expected[0].probability, 1e-5);
}

TEST_F(ServerTest, ExplainAddsAHeatMapAndAnOverlayPerCell) {
  const auto paths = real_images(2);
  std::vector<std::pair<std::string, std::string>> files;
  for (const auto& p : paths)
    files.push_back({std::filesystem::path(p).filename().string(), read_bytes(p)});
  files.push_back({"not-an-image.txt", "hello"});
  auto c = server_->client();
  auto plain = c.Post("/api/v1/predict", form(files));
  auto res = c.Post("/api/v1/predict?explain=1", form(files));
  ASSERT_TRUE(plain);
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200) << res->body;
  const auto body = json::parse(res->body);
  const auto plain_body = json::parse(plain->body);
  EXPECT_FALSE(plain_body["results"][0].contains("explanation")) << "only on request";
  const malaria::Classifier model = malaria::Classifier::load(MALARIA_TEST_MODEL);
  const int side = model.image_size();
  for (size_t i = 0; i < paths.size(); ++i) {
    const auto& r = body["results"][i];
    EXPECT_NEAR(r["probability_parasitized"].get<double>(),
                plain_body["results"][i]["probability_parasitized"].get<double>(), 1e-5);
    ASSERT_TRUE(r.contains("explanation")) << r.dump();
    const auto& heatmap = r["explanation"]["heatmap"];
    ASSERT_EQ(heatmap.size(), static_cast<size_t>(side));
    double peak = 0;
    for (const auto& row : heatmap) {
      ASSERT_EQ(row.size(), static_cast<size_t>(side));
      for (const auto& v : row) {
        EXPECT_GE(v.get<double>(), 0.0);
        EXPECT_LE(v.get<double>(), 1.0);
        peak = std::max(peak, v.get<double>());
      }
    }
    if (r["label"] == "Parasitized") {
      EXPECT_NEAR(peak, 1.0, 1e-3);
    }
    const std::string png = base64_decode(r["explanation"]["overlay_png"]);
    const cv::Mat overlay =
        cv::imdecode(std::vector<uchar>(png.begin(), png.end()), cv::IMREAD_COLOR);
    const cv::Mat original = cv::imread(paths[i]);
    ASSERT_FALSE(overlay.empty());
    EXPECT_EQ(overlay.size(), original.size()) << "cells up to 256 px keep their size";
  }
  EXPECT_TRUE(body["results"][paths.size()].contains("error"));
  EXPECT_FALSE(body["results"][paths.size()].contains("explanation"));
}

TEST_F(ServerTest, OperatingPointsCanBeChosenPerRequest) {
  auto c = server_->client();
  auto model = c.Get("/api/v1/model");
  ASSERT_TRUE(model);
  const auto meta = json::parse(model->body);
  ASSERT_TRUE(meta.contains("operating_points"));
  const auto paths = real_images(1);
  const std::string bytes = read_bytes(paths[0]);
  for (const auto& [name, point] : meta["operating_points"].items()) {
    auto res = c.Post("/api/v1/predict?operating_point=" + name, bytes, "image/png");
    ASSERT_TRUE(res);
    ASSERT_EQ(res->status, 200) << name << ": " << res->body;
    const json body = json::parse(res->body);
    const json& r = body["results"][0];
    const double p = r["probability_parasitized"];
    EXPECT_EQ(r["label"], p >= point["threshold"].get<double>() ? "Parasitized" : "Uninfected")
        << name;
  }
  auto bad = c.Post("/api/v1/predict?operating_point=nonsense", bytes, "image/png");
  ASSERT_TRUE(bad);
  EXPECT_EQ(bad->status, 400);
  EXPECT_NE(json::parse(bad->body)["error"].get<std::string>().find("nonsense"), std::string::npos);
}

TEST_F(ServerTest, OneBadFileDoesNotFailTheOthers) {
  const auto paths = real_images(1);
  auto c = server_->client();
  std::string truncated = read_bytes(paths[0]);
  truncated.resize(truncated.size() / 3);
  auto res = c.Post("/api/v1/predict", form({{"good.png", read_bytes(paths[0])},
                                             {"notes.txt", "just text"},
                                             {"cut.png", truncated}}));
  ASSERT_EQ(res->status, 200);
  const auto body = json::parse(res->body);
  EXPECT_TRUE(body["results"][0].contains("label"));
  EXPECT_EQ(body["results"][1]["status"], 415);
  EXPECT_NE(body["results"][1]["error"].get<std::string>().find("notes.txt"), std::string::npos);
  EXPECT_EQ(body["results"][2]["status"], 422);
  EXPECT_EQ(body["summary"]["errors"], 2);
}

TEST_F(ServerTest, BadInputsGetTheRightStatusAndAJsonError) {
  auto c = server_->client();
  auto expect_error = [](const httplib::Result& r, int status, const std::string& needle) {
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, status) << r->body;
    const auto body = json::parse(r->body);
    EXPECT_NE(body.dump().find(needle), std::string::npos) << body.dump();
  };
  expect_error(c.Post("/api/v1/predict", form({{"a.txt", "hello"}})), 415, "not a PNG");
  expect_error(c.Post("/api/v1/predict", "", "application/octet-stream"), 400, "no file");
  expect_error(c.Post("/api/v1/predict", form({{"bomb.png", png_claiming(100000, 100000)}})), 422,
               "bomb.png");
  expect_error(
      c.Post("/api/v1/predict", std::string(3 * 1024 * 1024, 'x'), "application/octet-stream"), 413,
      "too large");
  std::vector<std::pair<std::string, std::string>> many(41, {"x.png", "x"});
  expect_error(c.Post("/api/v1/predict", form(many)), 413, "too many files");
  expect_error(c.Get("/no/such/route"), 404, "no such route");
  auto wrong = c.Get("/api/v1/predict");
  ASSERT_TRUE(wrong);
  expect_error(wrong, 405, "not allowed");
  EXPECT_EQ(wrong->get_header_value("Allow"), "POST");
  expect_error(c.Delete("/api/v1/model"), 405, "not allowed");
}

std::string field_photo(const std::string& name) {
  return read_bytes(testing_support::data_root() + "/fields/iml/images/" + name);
}

TEST_F(ServerTest, ScreenFindsAndClassifiesTheCellsOfRealFields) {
  MALARIA_REQUIRE_DIR(testing_support::data_root() + "/fields/iml");
  auto c = server_->client();
  c.set_read_timeout(120);
  auto r = c.Post("/api/v1/screen?slide=S-1&overlay=1",
                  form({{"PA171690.JPG", field_photo("PA171690.JPG")},
                        {"PA171700.JPG", field_photo("PA171700.JPG")}}));
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  const auto body = json::parse(r->body);
  ASSERT_EQ(body["fields"].size(), 2u);
  EXPECT_TRUE(body["errors"].empty());
  size_t cells = 0, parasitized = 0;
  for (const auto& field : body["fields"]) {
    EXPECT_EQ(field["width"], 1280);
    EXPECT_EQ(field["height"], 960);
    EXPECT_GT(field["cells"].size(), 80u);  // about 150 red cells per field
    size_t calls = 0;
    for (const auto& cell : field["cells"]) {
      const int x = cell["x"], y = cell["y"], w = cell["w"], h = cell["h"];
      EXPECT_TRUE(x >= 0 && y >= 0 && w > 20 && h > 20 && x + w <= 1280 && y + h <= 960);
      const double p = cell["probability_parasitized"];
      EXPECT_TRUE(p >= 0 && p <= 1);
      const std::string decision = cell["decision"];
      EXPECT_TRUE(decision == "Parasitized" || decision == "Uninfected" ||
                  decision == "Inconclusive");
      calls += cell["label"] == "Parasitized";
    }
    const auto& s = field["summary"];
    EXPECT_EQ(s["cells"], field["cells"].size());
    EXPECT_EQ(s["parasitized"], calls);
    EXPECT_LE(s["ci_low"].get<double>(), s["parasitemia_percent"].get<double>());
    EXPECT_GE(s["ci_high"].get<double>(), s["parasitemia_percent"].get<double>());
    cells += s["cells"].get<size_t>();
    parasitized += s["parasitized"].get<size_t>();
    const std::string png = base64_decode(field["overlay_png"]);
    const cv::Mat overlay =
        cv::imdecode(std::vector<uint8_t>(png.begin(), png.end()), cv::IMREAD_COLOR);
    EXPECT_EQ(overlay.cols, 1024);
    EXPECT_EQ(overlay.rows, 768);
  }
  for (const auto& field : body["fields"]) {
    EXPECT_EQ(field["quality"]["verdict"], "ok") << field["quality"];
    // The bundled detector found the cells: every Parasitized call has a stage, the others none.
    EXPECT_EQ(field["segmenter"], "detector");
    size_t staged = 0;
    for (const auto& cell : field["cells"]) {
      ASSERT_TRUE(cell.contains("stage_probabilities")) << cell;
      if (cell["label"] == "Parasitized") {
        ASSERT_TRUE(cell["stage"].is_string()) << cell;
        ++staged;
      } else {
        EXPECT_TRUE(cell["stage"].is_null()) << cell;
      }
    }
    size_t counted = 0;
    for (const auto& [stage, n] : field["summary"]["stages"].items()) counted += n.get<size_t>();
    EXPECT_EQ(counted, staged);
  }
  EXPECT_TRUE(body["slide"]["gametocytes_present"].is_boolean());
  EXPECT_TRUE(body["slide"]["parasites_per_ul"]["rbc_per_ul_assumed"].get<bool>());
  EXPECT_EQ(body["model"]["segmenter"], "detector");
  EXPECT_EQ(body["slide"]["name"], "S-1");
  EXPECT_EQ(body["slide"]["fields"], 2);
  EXPECT_EQ(body["slide"]["fields_used"], 2);
  EXPECT_EQ(body["slide"]["cells"], cells);
  EXPECT_EQ(body["slide"]["parasitized"], parasitized);
  // Both fields hold annotated infected cells; a field model finds at least one and calls few.
  EXPECT_GE(parasitized, 1u);
  EXPECT_LT(parasitized, cells / 10);
  // The cells went through the work queue in passes of at most --max-batch (32 by default).
  const double passes = testing_support::metric(
      server_->port(), "malaria_inference_batch_size_count{kind=\"screen\"}");
  EXPECT_GE(passes, double(cells) / 32);
  EXPECT_EQ(testing_support::metric(
                server_->port(), "malaria_inference_batch_size_bucket{kind=\"screen\",le=\"32\"}"),
            passes);
}

TEST_F(ServerTest, ScreenRefusesBadUploadsOneByOne) {
  auto c = server_->client();
  auto expect_error = [](const httplib::Result& r, int status, const std::string& needle) {
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, status) << r->body;
    EXPECT_NE(r->body.find(needle), std::string::npos) << r->body;
  };
  expect_error(c.Post("/api/v1/screen", form({{"a.txt", "hello"}})), 415, "not a PNG");
  expect_error(c.Post("/api/v1/screen", "", "application/octet-stream"), 400, "no field image");
  expect_error(c.Post("/api/v1/screen", form({{"bomb.png", png_claiming(100000, 100000)}})), 422,
               "bomb.png");
  const std::string jpeg = field_photo("PA171690.JPG");
  expect_error(c.Post("/api/v1/screen", form({{"cut.jpg", jpeg.substr(0, 600)}})), 422, "cut.jpg");
  expect_error(c.Post("/api/v1/screen?rbc_per_ul=lots", form({{"f.jpg", jpeg}})), 400,
               "rbc_per_ul");
  expect_error(c.Post("/api/v1/screen?rbc_per_ul=5", form({{"f.jpg", jpeg}})), 400, "rbc_per_ul");
  expect_error(c.Post("/api/v1/screen?operating_point=nope", form({{"f.jpg", jpeg}})), 400,
               "unknown operating point");
  // A blank image is a field without cells, not an error.
  std::vector<uint8_t> blank;
  cv::imencode(".png", cv::Mat(480, 640, CV_8UC3, cv::Scalar::all(255)), blank);
  auto r = c.Post("/api/v1/screen",
                  form({{"blank.png", std::string(blank.begin(), blank.end())}, {"bad.png", "x"}}));
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  const auto body = json::parse(r->body);
  EXPECT_EQ(body["fields"][0]["summary"]["cells"], 0);
  EXPECT_EQ(body["errors"].size(), 1u);
  EXPECT_EQ(body["errors"][0]["filename"], "bad.png");
  // ... and such a field fails its quality verdict: no "0 cells, 0.000%" (issue 21, defect 5).
  EXPECT_EQ(body["fields"][0]["quality"]["verdict"], "fail");
  EXPECT_TRUE(body["fields"][0]["summary"]["parasitemia_percent"].is_null());
  EXPECT_TRUE(body["slide"]["parasitemia_percent"].is_null());
  EXPECT_EQ(body["slide"]["fields_used"], 0);
  // Photos too small for the detector's input (1 and 2 px a side) are screened as empty and
  // failed, without losing the other files of the request.
  std::vector<uint8_t> dot, strip;
  cv::imencode(".png", cv::Mat(2, 2, CV_8UC3, cv::Scalar(150, 120, 150)), dot);
  cv::imencode(".png", cv::Mat(1, 300, CV_8UC3, cv::Scalar(150, 120, 150)), strip);
  r = c.Post("/api/v1/screen", form({{"dot.png", std::string(dot.begin(), dot.end())},
                                     {"strip.png", std::string(strip.begin(), strip.end())},
                                     {"blank.png", std::string(blank.begin(), blank.end())}}));
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  const auto tiny = json::parse(r->body);
  ASSERT_EQ(tiny["fields"].size(), 3u);
  for (const auto& field : tiny["fields"]) EXPECT_EQ(field["quality"]["verdict"], "fail");
}

TEST_F(ServerTest, NoiseAndTextAreNeverGivenAParasitemia) {
  cv::Mat noise(480, 640, CV_8UC3), text(960, 1280, CV_8UC3, cv::Scalar::all(255));  // within 2 MB
  cv::randu(noise, 0, 256);
  for (int line = 0; line < 30; ++line)
    cv::putText(text, "Lorem ipsum dolor sit amet, consectetur", {10, 30 + 30 * line},
                cv::FONT_HERSHEY_SIMPLEX, 0.8, cv::Scalar::all(0), 2);
  std::vector<uint8_t> a, b;
  cv::imencode(".png", noise, a);
  cv::imencode(".png", text, b);
  auto c = server_->client();
  auto r = c.Post("/api/v1/screen", form({{"noise.png", std::string(a.begin(), a.end())},
                                          {"text.png", std::string(b.begin(), b.end())},
                                          {"real.jpg", field_photo("PA171690.JPG")}}));
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  const auto body = json::parse(r->body);
  for (int i : {0, 1}) {
    const auto& field = body["fields"][i];
    EXPECT_EQ(field["quality"]["verdict"], "fail") << field["file"];
    EXPECT_FALSE(field["quality"]["reasons"].empty());
    EXPECT_TRUE(field["cells"].empty());
    EXPECT_TRUE(field["summary"]["parasitemia_percent"].is_null());
  }
  // The slide's figure comes from the real field alone.
  EXPECT_EQ(body["slide"]["fields_used"], 1);
  EXPECT_EQ(body["slide"]["cells"], body["fields"][2]["summary"]["cells"]);
  EXPECT_EQ(body["slide"]["fields_failed"].size(), 2u);
}

// Images that are not one stained red cell get "Rejected" with a reason and no label or
// probability; a whole field points to screening; the real cell beside them is still classified.
TEST_F(ServerTest, NonCellsAreRejectedWithAReasonAndNoLabel) {
  cv::Mat noise(96, 96, CV_8UC3), purple(64, 64, CV_8UC3, cv::Scalar(150, 60, 120));
  cv::randu(noise, 0, 256);
  std::vector<uint8_t> a, b;
  cv::imencode(".png", noise, a);
  cv::imencode(".png", purple, b);
  const auto real = real_images(1);
  auto c = server_->client();
  auto r = c.Post("/api/v1/predict", form({{"noise.png", std::string(a.begin(), a.end())},
                                           {"purple.png", std::string(b.begin(), b.end())},
                                           {"field.jpg", field_photo("PA171690.JPG")},
                                           {"cell.png", read_bytes(real[0])}}));
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  const auto body = json::parse(r->body);
  for (int i : {0, 1, 2}) {
    const auto& x = body["results"][i];
    EXPECT_EQ(x["decision"], "Rejected") << x;
    EXPECT_TRUE(x["label"].is_null());
    EXPECT_TRUE(x["probability_parasitized"].is_null());
    EXPECT_FALSE(x["reason"].get<std::string>().empty());
  }
  EXPECT_FALSE(body["results"][0]["screen_instead"].get<bool>());
  EXPECT_TRUE(body["results"][2]["screen_instead"].get<bool>());
  EXPECT_NE(body["results"][2]["reason"].get<std::string>().find("screen"), std::string::npos);
  EXPECT_NE(body["results"][3]["decision"], "Rejected");
  EXPECT_EQ(body["summary"]["rejected"], 3);
  EXPECT_EQ(body["summary"]["cells"], 1);
  // The same with explanations asked for: no heat map for what is not a cell.
  auto e =
      c.Post("/api/v1/predict?explain=1", form({{"noise.png", std::string(a.begin(), a.end())}}));
  ASSERT_TRUE(e);
  ASSERT_EQ(e->status, 200) << e->body;
  EXPECT_EQ(json::parse(e->body)["results"][0]["decision"], "Rejected");
  EXPECT_FALSE(json::parse(e->body)["results"][0].contains("explanation"));
}

// The exposition text is checked by the Prometheus project's own parser after every kind of
// route has been used (issue 21, defect 4: a family without TYPE after the first screening).
TEST_F(ServerTest, MetricsParseWithTheReferenceParserAfterEveryRoute) {
  MALARIA_REQUIRE_DIR(testing_support::data_root() + "/fields/iml");
  auto c = server_->client();
  const std::string png = read_bytes(real_images(1)[0]);
  c.Post("/api/v1/predict", png, "image/png");
  c.Post("/api/v1/predict?explain=1", png, "image/png");
  c.Post("/predict", form({{"cell.png", png}}));
  c.Post("/api/v1/screen", form({{"f.jpg", field_photo("PA171690.JPG")}}));
  c.Post("/api/v1/screen", form({{"x.png", "x"}}));
  c.Get("/api/v1/model");
  c.Get("/nope");
  auto metrics = c.Get("/metrics");
  ASSERT_TRUE(metrics);
  testing_support::TempDir dir;
  testing_support::write_bytes(dir / "metrics.txt", metrics->body);
  const std::string cmd =
      "/usr/bin/python3 -c \"import sys; from prometheus_client.parser import "
      "text_string_to_metric_families as parse; "
      "print(sum(len(f.samples) for f in parse(open(sys.argv[1]).read())))\" " +
      (dir / "metrics.txt") + " 2>&1";
  FILE* p = ::popen(cmd.c_str(), "r");
  std::string out;
  char buf[256];
  while (size_t n = fread(buf, 1, sizeof buf, p)) out.append(buf, n);
  EXPECT_EQ(::pclose(p), 0) << out << "\n" << metrics->body;
  EXPECT_GT(std::atoi(out.c_str()), 20) << out;
  EXPECT_NE(metrics->body.find("# TYPE malaria_fields_screened_total counter"), std::string::npos);
}

TEST(ServerOptions, ScreenWithoutAFieldModelIsNotFound) {
  ServerProcess server({"--field-model", "none"});
  auto r = server.client().Post("/api/v1/screen", "x", "image/png");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 404);
  EXPECT_NE(r->body.find("--field-model"), std::string::npos);
}

TEST_F(ServerTest, FormRouteAnswersWithTheOriginalResultPage) {
  const auto paths = real_images(1);
  auto c = server_->client();
  auto res = c.Post("/predict/", form({{"cell.png", read_bytes(paths[0])}}));
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200);
  EXPECT_NE(res->get_header_value("Content-Type").find("text/html"), std::string::npos);
  EXPECT_TRUE(std::regex_search(
      res->body, std::regex(R"(Prediction: (Parasitized|Uninfected) \(Confidence: \d+\.\d\d%\))")));
  EXPECT_NE(res->body.find("data:image/png;base64,"), std::string::npos);
  auto bad = c.Post("/predict/", form({{"notes.txt", "hello"}}));
  ASSERT_TRUE(bad);
  EXPECT_EQ(bad->status, 415);
  EXPECT_NE(bad->body.find("notes.txt"), std::string::npos);
  EXPECT_NE(bad->get_header_value("Content-Type").find("text/html"), std::string::npos);
}

TEST_F(ServerTest, ConcurrentClientsAllGetTheRightAnswer) {
  const auto paths = real_images(8);
  const malaria::Classifier model = malaria::Classifier::load(MALARIA_TEST_MODEL);
  const auto expected = malaria::predict_files(model, paths, model.operating_point());
  std::vector<std::string> bytes;
  for (const auto& p : paths) bytes.push_back(read_bytes(p));
  std::atomic<int> ok{0}, wrong{0}, failed{0};
  std::vector<std::thread> clients;
  for (int t = 0; t < 8; ++t)
    clients.emplace_back([&, t] {
      auto c = server_->client();
      for (int i = 0; i < 50; ++i) {
        const size_t k = (t * 50 + i) % bytes.size();
        auto res = c.Post("/api/v1/predict", bytes[k], "image/png");
        ASSERT_TRUE(res);
        if (!res || res->status != 200) {
          failed++;
          continue;
        }
        const double p = json::parse(res->body)["results"][0]["probability_parasitized"];
        (std::abs(p - expected[k].probability) < 1e-5 ? ok : wrong)++;
      }
    });
  for (auto& c : clients) c.join();
  EXPECT_EQ(ok, 400);
  EXPECT_EQ(wrong, 0);
  EXPECT_EQ(failed, 0);

  // Metrics saw them.
  auto metrics = server_->client().Get("/metrics");
  ASSERT_TRUE(metrics);
  ASSERT_EQ(metrics->status, 200);
  EXPECT_NE(
      metrics->body.find("malaria_http_requests_total{route=\"/api/v1/predict\",status=\"200\"}"),
      std::string::npos);
  EXPECT_NE(metrics->body.find("malaria_predictions_total{decision=\"Parasitized\"}"),
            std::string::npos);
}

TEST(ServerOptions, ApiKeyGuardsApiRoutesOnly) {
  MALARIA_REQUIRE_DIR(testing_support::data_root() + "/cell_images_128");
  ServerProcess server({"--api-key", "s3cret", "--cors-origin", "https://lab.example"});
  auto c = server.client();
  auto denied = c.Get("/api/v1/model");
  ASSERT_TRUE(denied);
  ASSERT_EQ(denied->status, 401);
  EXPECT_NE(json::parse(denied->body)["error"].get<std::string>().find("API key"),
            std::string::npos);
  EXPECT_EQ(c.Get("/api/v1/model", {{"Authorization", "Bearer wrong"}}).value().status, 401);
  // The scheme name is case-insensitive (RFC 7235).
  EXPECT_EQ(c.Get("/api/v1/model", {{"Authorization", "bearer s3cret"}}).value().status, 200);
  auto allowed = c.Get("/api/v1/model", {{"Authorization", "Bearer s3cret"}});
  ASSERT_TRUE(allowed);
  EXPECT_EQ(allowed->status, 200);
  EXPECT_EQ(allowed->get_header_value("Access-Control-Allow-Origin"), "https://lab.example");
  EXPECT_EQ(c.Get("/health").value().status, 200);
  EXPECT_EQ(c.Options("/api/v1/predict").value().status, 204);
}

TEST(ServerOptions, FullQueueAnswers503WithRetryAfter) {
  MALARIA_REQUIRE_DIR(testing_support::data_root() + "/cell_images_128");
  // The worker waits (up to 10 minutes) for a second image to fill its batch of 2, so the first
  // request stays queued, and the one-image queue is full.
  ServerProcess server({"--queue", "1", "--max-batch", "2", "--batch-wait-ms", "600000"});
  const std::string png = read_bytes(real_images(1)[0]);
  int first_status = 0;
  std::thread first([&] {
    if (auto r = server.client().Post("/api/v1/predict", png, "image/png"))
      first_status = r->status;
  });
  ASSERT_TRUE(testing_support::wait_for_metric(server.port(),
                                               "malaria_work_waiting_images{kind=\"classify\"}",
                                               [](double v) { return v == 1; }));
  auto res = server.client().Post("/api/v1/predict", png, "image/png");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 503);
  EXPECT_EQ(res->get_header_value("Retry-After"), "1");
  ::kill(server.pid(), SIGTERM);  // stopping answers the waiting request instead of waiting on
  first.join();
  EXPECT_EQ(first_status, 200);
  EXPECT_EQ(server.wait_exit(), 0);
}

TEST(ServerOptions, RequestsWaitingTogetherShareOneForwardPass) {
  MALARIA_REQUIRE_DIR(testing_support::data_root() + "/cell_images_128");
  ServerProcess server({"--max-batch", "8", "--batch-wait-ms", "600000"});
  const auto paths = real_images(4);
  std::atomic<int> ok{0};
  std::vector<std::thread> clients;
  for (const auto& path : paths)
    clients.emplace_back([&, path] {
      if (auto r = server.client().Post("/api/v1/predict", read_bytes(path), "image/png");
          r && r->status == 200)
        ok++;
    });
  for (auto& c : clients) c.join();
  EXPECT_EQ(ok, 8);
  // One forward pass of 8 images: fails when every request runs alone.
  EXPECT_EQ(testing_support::metric(server.port(),
                                    "malaria_inference_batch_size_count{kind=\"classify\"}"),
            1);
  EXPECT_EQ(
      testing_support::metric(server.port(), "malaria_inference_batch_size_sum{kind=\"classify\"}"),
      8);
}

TEST(ServerOptions, SigtermFinishesTheRequestInFlight) {
  MALARIA_REQUIRE_DIR(testing_support::data_root() + "/cell_images_128");
  ServerProcess server({"--batch-wait-ms", "600000", "--max-batch", "64"});
  const std::string png = read_bytes(real_images(1)[0]);
  int status = 0;
  std::thread request([&] {
    if (auto r = server.client().Post("/api/v1/predict", png, "image/png")) status = r->status;
  });
  ASSERT_TRUE(testing_support::wait_for_metric(server.port(),
                                               "malaria_work_waiting_images{kind=\"classify\"}",
                                               [](double v) { return v == 1; }));
  ::kill(server.pid(), SIGTERM);
  request.join();
  EXPECT_EQ(status, 200);
  EXPECT_EQ(server.wait_exit(), 0);
}

TEST(WorkQueue, EachKindHasItsOwnBudget) {
  const malaria::Classifier model = malaria::Classifier::load(MALARIA_TEST_MODEL);
  malaria::WorkLimits limits;
  limits.capacity = {4, 2, 8};
  malaria::WorkQueue queue(limits);
  using malaria::WorkKind;
  auto explain = queue.admit(WorkKind::explain, 2);
  ASSERT_TRUE(explain);
  EXPECT_FALSE(queue.admit(WorkKind::explain, 1));  // explanations are full ...
  auto classify = queue.admit(WorkKind::classify, 4);
  EXPECT_TRUE(classify);  // ... predictions are not
  EXPECT_FALSE(queue.admit(WorkKind::classify, 1));
  EXPECT_TRUE(queue.admit(WorkKind::screen, 100));  // alone, a request larger than its budget
  // The work itself runs and gives the budget back.
  const int s = model.image_size();
  std::vector<float> pixels(3ull * s * s, 0.5f);
  const auto p = queue.predict(*classify, model, pixels, 1).get();
  ASSERT_EQ(p.probability.size(), 1u);
  EXPECT_FLOAT_EQ(p.probability[0], model.predict(pixels.data(), 1)[0]);
  const auto e = queue.explain(*explain, model, pixels, 1).get();
  ASSERT_EQ(e.size(), 1u);
  classify.reset();
  EXPECT_TRUE(queue.admit(WorkKind::classify, 4));
  queue.cancel();
  EXPECT_FALSE(queue.admit(WorkKind::classify, 1));
  EXPECT_THROW(queue.predict(*explain, model, pixels, 1), malaria::WorkCancelled);
}

TEST(ServerOptions, RefusesABadModelFileClearly) {
  testing_support::TempDir dir;
  testing_support::write_bytes(dir / "bad.pt", "not a model");
  const auto [status, out] =
      testing_support::serve_and_capture(dir / "bad.pt", testing_support::free_port());
  EXPECT_NE(status, 0);
  EXPECT_NE(out.find("not a malaria model file"), std::string::npos) << out;
  // A FIFO must not hang the server at start (issue 21, defect 6).
  ASSERT_EQ(::mkfifo((dir / "fifo.pt").c_str(), 0600), 0);
  const auto [fifo_status, fifo_out] =
      testing_support::serve_and_capture(dir / "fifo.pt", testing_support::free_port());
  EXPECT_NE(fifo_status, 0);
  EXPECT_NE(fifo_out.find("not a regular file"), std::string::npos) << fifo_out;
}
