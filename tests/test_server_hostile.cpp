// Attacks a hostile client would make on the real server binary, each followed by a normal
// request that must still be answered correctly (issue 9's defects as regression tests).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "server_fixture.h"
#include "socket_helpers.h"
#include "test_helpers.h"

using json = nlohmann::json;
using testing_support::connect_to;
using testing_support::raw_request;
using testing_support::read_bytes;
using testing_support::read_until_closed;
using testing_support::send_all;
using testing_support::ServerProcess;
using testing_support::status_of;

namespace {

std::string body_of(const std::string& raw) {
  const size_t at = raw.find("\r\n\r\n");
  return at == std::string::npos ? "" : raw.substr(at + 4);
}

long resident_kib(pid_t pid) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(status, line);)
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  return -1;
}

std::string real_cell() {
  const std::string dir = testing_support::data_root() + "/cell_images_128/Parasitized";
  std::vector<std::string> files;
  for (const auto& e : std::filesystem::directory_iterator(dir)) files.push_back(e.path());
  std::sort(files.begin(), files.end());
  return read_bytes(files.front());
}

// A real PNG whose header claims w x h pixels.
std::string png_claiming(uint32_t w, uint32_t h) {
  std::vector<uint8_t> png;
  cv::imencode(".png", cv::Mat(4, 4, CV_8UC3, cv::Scalar(1, 2, 3)), png);
  for (int i = 0; i < 4; ++i) {
    png[16 + i] = static_cast<uint8_t>(w >> (24 - 8 * i));
    png[20 + i] = static_cast<uint8_t>(h >> (24 - 8 * i));
  }
  return std::string(png.begin(), png.end());
}

std::string multipart(const std::vector<std::pair<std::string, std::string>>& files,
                      const std::string& boundary = "XyZbOuNdArY") {
  std::string body;
  for (const auto& [name, bytes] : files)
    body += "--" + boundary + "\r\nContent-Disposition: form-data; name=\"file\"; filename=\"" +
            name + "\"\r\nContent-Type: image/png\r\n\r\n" + bytes + "\r\n";
  return body + "--" + boundary + "--\r\n";
}

std::string post(const std::string& path, const std::string& body, const std::string& content_type,
                 const std::string& extra_headers = "") {
  return "POST " + path +
         " HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: " + content_type +
         "\r\nContent-Length: " + std::to_string(body.size()) + "\r\n" + extra_headers + "\r\n" +
         body;
}

// Sends `request` on `count` new connections, left open for the answers; fewer when a
// connection fails.
std::vector<int> send_on_new_connections(int port, const std::string& request, int count) {
  std::vector<int> fds;
  for (int i = 0; i < count; ++i) {
    const int fd = connect_to(port);
    if (fd < 0) break;
    send_all(fd, request);
    fds.push_back(fd);
  }
  return fds;
}

struct HostileClientOptions {
  static std::vector<std::string> args() { return {"--max-upload-mb", "2", "--api-key", "k3y"}; }
};
class HostileClient : public testing_support::SharedServerTest<HostileClientOptions> {
 protected:
  void TearDown() override {
    if (!server_) return;
    // Whatever the attack, the server still answers a real request correctly.
    const std::string cell = real_cell();
    const std::string raw = raw_request(server_->port(), post("/api/v1/predict", cell, "image/png",
                                                              "Authorization: Bearer k3y\r\n"));
    ASSERT_EQ(status_of(raw), 200) << raw.substr(0, 300);
    const auto body = json::parse(body_of(raw));
    EXPECT_TRUE(body["results"][0].contains("probability_parasitized"));
    EXPECT_LT(resident_kib(server_->pid()), 1024 * 1024) << "resident memory over 1 GB";
  }
  int port() const { return server_->port(); }
};

}  // namespace

TEST_F(HostileClient, InvalidUtf8InThePathIsA404WithValidJson) {
  for (const char* path : {"/%ff", "/%c0%af", "/api/%ff"}) {
    const std::string raw = raw_request(
        port(),
        std::string("GET ") + path +
            " HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer k3y\r\nConnection: close\r\n\r\n");
    ASSERT_EQ(status_of(raw), 404) << path << ": " << raw.substr(0, 200);
    const auto body = json::parse(body_of(raw));  // throws on invalid UTF-8
    EXPECT_EQ(body["status"], 404);
  }
  const std::string raw = raw_request(
      port(), "POST /%80 HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
  EXPECT_EQ(status_of(raw), 404);
}

TEST_F(HostileClient, ImagesClaimingHugeDimensionsAreRefusedBeforeDecoding) {
  for (auto [w, h] :
       {std::pair{30000u, 30000u}, {10000u, 10000u}, {5000u, 20u}, {0xFFFFFFFFu, 1u}}) {
    const std::string raw = raw_request(
        port(), post("/api/v1/predict", multipart({{"bomb.png", png_claiming(w, h)}}),
                     "multipart/form-data; boundary=XyZbOuNdArY", "Authorization: Bearer k3y\r\n"));
    EXPECT_EQ(status_of(raw), 422) << w << "x" << h;
    EXPECT_NE(body_of(raw).find("larger than the limit"), std::string::npos) << body_of(raw);
  }
}

TEST_F(HostileClient, ChunkedBodiesCountAgainstTheLimit) {
  const int fd = connect_to(port());
  ASSERT_GE(fd, 0);
  send_all(fd,
           "POST /api/v1/predict HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer k3y\r\n"
           "Transfer-Encoding: chunked\r\nContent-Type: image/png\r\n\r\n");
  const std::string chunk = "100000\r\n" + std::string(1 << 20, 'x') + "\r\n";
  int sent_mb = 0;
  while (sent_mb < 200 && send_all(fd, chunk)) ++sent_mb;
  send_all(fd, "0\r\n\r\n");
  const std::string raw = read_until_closed(fd, 5000);
  ::close(fd);
  EXPECT_LT(sent_mb, 200) << "the server read 200 MB for a 2 MB limit";
  if (!raw.empty()) {
    EXPECT_EQ(status_of(raw), 413) << raw.substr(0, 200);
  }

  // A chunked body within the limit is fine.
  const std::string cell = real_cell();
  std::ostringstream hex;
  hex << std::hex << cell.size();
  const std::string ok =
      raw_request(port(),
                  "POST /api/v1/predict HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer k3y\r\n"
                  "Connection: close\r\nTransfer-Encoding: chunked\r\n\r\n" +
                      hex.str() + "\r\n" + cell + "\r\n0\r\n\r\n");
  EXPECT_EQ(status_of(ok), 200) << ok.substr(0, 300);
}

TEST_F(HostileClient, CompressedBodiesAreRefused) {
  const std::string raw =
      raw_request(port(), post("/api/v1/predict", std::string(1000, '\0'), "image/png",
                               "Authorization: Bearer k3y\r\nContent-Encoding: gzip\r\n"));
  EXPECT_EQ(status_of(raw), 415);
  EXPECT_NE(body_of(raw).find("Content-Encoding"), std::string::npos);
}

TEST_F(HostileClient, AFileNameThatIsNotUtf8DoesNotFailTheRequest) {
  const std::string raw = raw_request(
      port(), post("/api/v1/predict",
                   multipart({{"bad\xff\xfe name.png", real_cell()}, {"good.png", real_cell()}}),
                   "multipart/form-data; boundary=XyZbOuNdArY", "Authorization: Bearer k3y\r\n"));
  ASSERT_EQ(status_of(raw), 200) << raw.substr(0, 300);
  const auto body = json::parse(body_of(raw));
  ASSERT_EQ(body["results"].size(), 2u);
  EXPECT_TRUE(body["results"][0].contains("label"));
  EXPECT_EQ(body["results"][1]["filename"], "good.png");
}

TEST_F(HostileClient, LenientHttpIsRefusedWith400) {
  const std::string requests[] = {
      "POST /api/v1/predict HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: "
      "6\r\n\r\nhello!",
      "GET /health HTTP/1.1\r\nHost: x\r\nThis line has no colon\r\n\r\n",
      "POST /api/v1/predict HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer k3y\r\n"
      "Transfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n",
      "POST /api/v1/predict HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
  };
  for (const auto& r : requests) EXPECT_EQ(status_of(raw_request(port(), r)), 400) << r;
}

TEST_F(HostileClient, ControlBytesInTheUrlAre400) {
  for (const std::string path :
       {"/metrics%00.png", "/api/v1/screen%00", "/health?x=%0a", "/health%7F", "/a%0aFAKE%20LOG"}) {
    const std::string raw =
        raw_request(port(), "GET " + path + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    EXPECT_EQ(status_of(raw), 400) << path << "\n" << raw.substr(0, 300);
    EXPECT_EQ(raw.find("malaria_"), std::string::npos) << "the metrics were served";
  }
}

TEST_F(HostileClient, SpacesAndTabsInTheRequestTargetAre400) {
  for (const std::string line : {"GET /health x HTTP/1.1", "GET /he\talth HTTP/1.1"}) {
    const std::string raw = raw_request(port(), line + "\r\nHost: x\r\nConnection: close\r\n\r\n");
    EXPECT_EQ(status_of(raw), 400) << line << "\n" << raw.substr(0, 300);
  }
}

TEST_F(HostileClient, TwoThousandQueryParametersAre414) {
  std::string query;
  for (int i = 0; i < 2000; ++i) query += (i ? "&a=" : "a=") + std::to_string(i % 10);
  const std::string raw = raw_request(
      port(), "GET /health?" + query + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  EXPECT_EQ(status_of(raw), 414) << raw.substr(0, 300);
}

TEST_F(HostileClient, AMissingHostIsOne400AndCounted) {
  const std::string sample = "malaria_http_requests_total{route=\"/health\",status=\"400\"}";
  const double before = std::max(0.0, testing_support::metric(port(), sample));
  const std::string raw = raw_request(port(), "GET /health HTTP/1.1\r\nConnection: close\r\n\r\n");
  EXPECT_EQ(status_of(raw), 400);
  size_t heads = 0;
  for (size_t at = raw.find("HTTP/1.1 "); at != std::string::npos;
       at = raw.find("HTTP/1.1 ", at + 1))
    heads++;
  EXPECT_EQ(heads, 1u) << raw;  // one header block, not two
  EXPECT_NE(body_of(raw).find("Host"), std::string::npos) << raw;
  EXPECT_TRUE(
      testing_support::wait_for_metric(port(), sample, [&](double v) { return v == before + 1; }));
  // HTTP/1.0 needs no Host.
  EXPECT_EQ(status_of(raw_request(port(), "GET /health HTTP/1.0\r\n\r\n")), 200);
}

TEST_F(HostileClient, ExpectContinueWithoutABodyIsAnswered408) {
  const int fd = connect_to(port());
  ASSERT_GE(fd, 0);
  send_all(fd,
           "POST /api/v1/predict HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer k3y\r\n"
           "Content-Type: image/png\r\nContent-Length: 100\r\nExpect: 100-continue\r\n\r\n");
  const std::string raw = read_until_closed(fd, 120000);  // the idle timeout is 10 s
  ::close(fd);
  EXPECT_NE(raw.find("100 Continue"), std::string::npos) << raw;
  EXPECT_NE(raw.find("HTTP/1.1 408"), std::string::npos) << raw;
  EXPECT_GE(testing_support::metric(port(), "malaria_http_request_timeouts_total"), 1);
}

TEST(ServerHardening, SlowAndIdleClientsDoNotStopHealthChecks) {
  MALARIA_REQUIRE_DIR(testing_support::data_root() + "/cell_images_128");
  // A header deadline far beyond the test, so that the check below does not race it on a slow
  // machine.
  ServerProcess server({"--header-timeout", "600"});
  auto port = [&] { return server.port(); };
  std::vector<int> idle, slow;
  for (int i = 0; i < 500; ++i)
    if (int fd = connect_to(port()); fd >= 0) idle.push_back(fd);
  for (int i = 0; i < 40; ++i)
    if (int fd = connect_to(port()); fd >= 0) {
      send_all(fd, "POST /api/v1/predict HTTP/1.1\r\nHost: x\r\n");
      slow.push_back(fd);
    }
  EXPECT_EQ(idle.size(), 500u);
  EXPECT_EQ(slow.size(), 40u);
  ASSERT_TRUE(testing_support::wait_for_metric(port(), "malaria_http_connections_open",
                                               [](double v) { return v >= 540; }));
  for (int round = 0; round < 5; ++round) {
    for (int fd : slow) send_all(fd, "X-Slow: 1\r\n");  // a header line now and then
    const std::string raw =
        raw_request(port(), "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 60000);
    EXPECT_EQ(status_of(raw), 200);
  }
  // Answered while every slow and idle client was still connected: a server held up by them
  // would answer only once they are cut off at the header deadline.
  EXPECT_GE(testing_support::metric(port(), "malaria_http_connections_open"), 540);
  for (int fd : idle) ::close(fd);
  for (int fd : slow) ::close(fd);
}

TEST(ServerHardening, AHeaderThatNeverEndsIsCutOffAtTheDeadline) {
  MALARIA_REQUIRE_DIR(testing_support::data_root() + "/cell_images_128");
  ServerProcess server({"--header-timeout", "2"});
  const int fd = connect_to(server.port());
  ASSERT_GE(fd, 0);
  const auto t0 = std::chrono::steady_clock::now();
  bool open = true;
  // One header byte every 300 ms keeps an idle timer happy, but not the header deadline. The
  // 60 s limit only catches a server that never cuts the client off.
  while (open && std::chrono::steady_clock::now() - t0 < std::chrono::seconds(60)) {
    open = send_all(fd, "G");
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 300) > 0) {
      char c;
      open = ::recv(fd, &c, 1, 0) > 0;
    }
  }
  ::close(fd);
  EXPECT_FALSE(open);
}

TEST(ServerHardening, ASecondServerOnTheSamePortFailsClearly) {
  MALARIA_REQUIRE_DIR(testing_support::data_root() + "/cell_images_128");
  ServerProcess first({});
  const auto [status, out] = testing_support::serve_and_capture(MALARIA_TEST_MODEL, first.port());
  EXPECT_NE(status, 0);
  EXPECT_NE(out.find("address already in use"), std::string::npos) << out;
}

TEST(ServerHardening, SigtermAnswersEveryConnectionItAccepted) {
  MALARIA_REQUIRE_DIR(testing_support::data_root() + "/cell_images_128");
  // The worker would wait 10 minutes to fill a batch of 64: the 24 requests stay queued until
  // the signal.
  ServerProcess server({"--batch-wait-ms", "600000", "--max-batch", "64"});
  const std::vector<int> fds =
      send_on_new_connections(server.port(), post("/api/v1/predict", real_cell(), "image/png"), 24);
  ASSERT_EQ(fds.size(), 24u);
  ASSERT_TRUE(testing_support::wait_for_metric(server.port(),
                                               "malaria_work_waiting_images{kind=\"classify\"}",
                                               [](double v) { return v == 24; }));
  ::kill(server.pid(), SIGTERM);
  int ok = 0;
  for (int fd : fds) {
    ok += status_of(read_until_closed(fd, 60000)) == 200;
    ::close(fd);
  }
  EXPECT_EQ(ok, 24);  // all were accepted before the signal
  EXPECT_EQ(server.wait_exit(), 0);
}

// A 4096 x 4096 photo made of a real field, tiled: about 1,500 real red cells.
std::string tiled_real_field() {
  const cv::Mat field =
      cv::imread(testing_support::data_root() + "/fields/iml/images/PA171690.JPG");
  cv::Mat big(4096, 4096, CV_8UC3);
  for (int y = 0; y < 4096; y += field.rows)
    for (int x = 0; x < 4096; x += field.cols) {
      const cv::Rect to(x, y, std::min(field.cols, 4096 - x), std::min(field.rows, 4096 - y));
      field(cv::Rect(0, 0, to.width, to.height)).copyTo(big(to));
    }
  std::vector<uint8_t> jpeg;
  cv::imencode(".jpg", big, jpeg, {cv::IMWRITE_JPEG_QUALITY, 90});
  return std::string(jpeg.begin(), jpeg.end());
}

TEST(ServerHardening, SigtermPastTheDrainTimeAnswersEveryScreeningWith503OrItsResult) {
  MALARIA_REQUIRE_DIR(testing_support::data_root() + "/fields/iml");
  ServerProcess server({"--drain-seconds", "1"});
  const std::vector<int> fds = send_on_new_connections(
      server.port(), post("/api/v1/screen", tiled_real_field(), "image/jpeg"), 4);
  ASSERT_EQ(fds.size(), 4u);
  ASSERT_TRUE(testing_support::wait_for_metric(
      server.port(), "malaria_work_admitted{kind=\"screen\"}", [](double v) { return v > 0; }));
  ::kill(server.pid(), SIGTERM);
  int answered = 0, refused = 0;
  for (int fd : fds) {
    const std::string raw = read_until_closed(fd, 120000);
    const int status = status_of(raw);
    answered += status == 200 || status == 503;
    if (status == 503) {
      refused++;
      EXPECT_NE(raw.find("Retry-After: 1"), std::string::npos) << raw.substr(0, 400);
    }
    ::close(fd);
  }
  EXPECT_EQ(answered, 4);  // nobody is left without an answer
  EXPECT_EQ(server.wait_exit(), 0);
  std::printf("%d of 4 screenings refused with 503 after the drain time\n", refused);
}

TEST(ServerHardening, ScreeningMemoryStaysBoundedAndIsGivenBack) {
  MALARIA_REQUIRE_DIR(testing_support::data_root() + "/fields/iml");
  ServerProcess server({});
  // 17,000 stained discs: a field the quality verdict fails before classifying anything ...
  cv::Mat discs(4096, 4096, CV_8UC3, cv::Scalar::all(230));
  for (int y = 16; y < 4096; y += 31)
    for (int x = 16; x < 4096; x += 31) cv::circle(discs, {x, y}, 14, {150, 120, 200}, cv::FILLED);
  std::vector<uint8_t> png;
  cv::imencode(".png", discs, png);
  // ... and a real one with ~1,500 cells, classified in fixed batches.
  const std::vector<std::string> bodies = {std::string(png.begin(), png.end()), tiled_real_field()};
  std::vector<std::thread> clients;
  std::atomic<int> ok{0};
  for (int i = 0; i < 4; ++i)
    clients.emplace_back([&, i] {
      auto c = server.client();
      c.set_read_timeout(300);
      auto r = c.Post("/api/v1/screen", bodies[i % 2], i % 2 ? "image/jpeg" : "image/png");
      // Four fields of 17 MP fit the default screening budget of 128 MP: all are screened.
      if (!r || r->status != 200) return;
      const auto body = json::parse(r->body);
      const auto& field = body["fields"][0];
      if (i % 2 == 0) {
        EXPECT_EQ(field["quality"]["verdict"], "fail");
        EXPECT_TRUE(field["summary"]["parasitemia_percent"].is_null());
      } else {
        EXPECT_NE(field["quality"]["verdict"], "fail") << field["quality"];
        EXPECT_GT(field["cells"].size(), 1000u);
      }
      ok += r->status == 200;
    });
  for (auto& c : clients) c.join();
  EXPECT_EQ(ok, 4);
#if defined(__SANITIZE_ADDRESS__)
  const long limit_kib = 4l << 20;  // AddressSanitizer's shadow memory and quarantine
#else
  const long limit_kib = 2l << 20;
#endif
  EXPECT_LT(resident_kib(server.pid()), limit_kib) << "resident memory over the limit";
}
