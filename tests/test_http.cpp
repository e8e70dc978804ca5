// The torch-free HTTP pieces: routing, error bodies, metrics text, the Authorization header.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <nlohmann/json.hpp>
#include <thread>

#include "serve/http_server.h"
#include "serve/http_util.h"
#include "serve/prometheus.h"
#include "serve/render.h"
#include "serve/router.h"
#include "socket_helpers.h"

using namespace malaria;

TEST(Router, Answers404And405WithAllow) {
  Router router;
  router.add("GET", "/a", [](const HttpRequest&, HttpResponse& res) { res.body = "A"; });
  router.add("POST", "/a", [](const HttpRequest&, HttpResponse& res) { res.body = "B"; });
  HttpRequest req;
  HttpResponse res;
  req.method = "GET";
  req.path = "/a";
  router.dispatch(req, res, render_error);
  EXPECT_EQ(res.body, "A");
  req.method = "DELETE";
  res = {};
  router.dispatch(req, res, render_error);
  EXPECT_EQ(res.status, 405);
  EXPECT_EQ(res.header("Allow"), "GET, POST");
  req.path = "/\xFF\xFE";
  res = {};
  router.dispatch(req, res, render_error);
  EXPECT_EQ(res.status, 404);
  EXPECT_EQ(nlohmann::json::parse(res.body)["status"], 404);  // valid JSON despite the bytes
  EXPECT_EQ(router.route_label("/a"), "/a");
  EXPECT_EQ(router.route_label("/anything/else"), "other");
}

TEST(Router, PatternsHandTheirSegmentsByName) {
  Router router;
  std::string seen;
  router.add("POST", "/api/v1/slides/{id}/sign",
             [&](const HttpRequest&, HttpResponse&, const PathParams& p) { seen = p.at("id"); });
  router.add("GET", "/api/v1/slides",
             [](const HttpRequest&, HttpResponse& res) { res.body = "L"; });
  HttpRequest req;
  HttpResponse res;
  req.method = "POST";
  req.path = "/api/v1/slides/s123/sign";
  router.dispatch(req, res, render_error);
  EXPECT_EQ(seen, "s123");
  EXPECT_EQ(router.route_label(req.path), "/api/v1/slides/{id}/sign");
  req.method = "GET";
  router.dispatch(req, res, render_error);
  EXPECT_EQ(res.status, 405);
  EXPECT_EQ(res.header("Allow"), "POST");
  for (const char* path :
       {"/api/v1/slides//sign", "/api/v1/slides/s1/sign/x", "/api/v1/slides/s1"}) {
    req.path = path;
    res = {};
    router.dispatch(req, res, render_error);
    EXPECT_EQ(res.status, 404) << path;
  }
  req.path = "/api/v1/slides";
  res = {};
  router.dispatch(req, res, render_error);
  EXPECT_EQ(res.body, "L");  // exact paths still win
}

TEST(Render, HtmlForBrowsersJsonForApisAndPrograms) {
  HttpRequest req;
  req.path = "/predict/";
  req.headers.emplace("accept", "text/html,application/xhtml+xml");  // header names any case
  HttpResponse res;
  render_error(req, res, 413, "too big <script>");
  EXPECT_NE(res.content_type.find("text/html"), std::string::npos);
  EXPECT_NE(res.body.find("too big &lt;script&gt;"), std::string::npos);
  req.path = "/api/v1/predict";
  res = {};
  render_error(req, res, 413, "too big");
  EXPECT_EQ(res.content_type, "application/json");
  EXPECT_EQ(nlohmann::json::parse(res.body)["error"], "too big");
}

TEST(Prometheus, LargeCountsAreExact) {
  MetricsRegistry m;
  m.describe("c_total", "a counter", "counter");
  m.count("c_total", "", 1234567);
  m.describe("h", "a histogram", "histogram", {0.25, 1});
  for (int i = 0; i < 3; ++i) m.observe("h", "", 0.5);
  const std::string text = m.render();
  EXPECT_NE(text.find("c_total 1234567\n"), std::string::npos) << text;
  EXPECT_NE(text.find("h_bucket{le=\"0.25\"} 0\n"), std::string::npos) << text;
  EXPECT_NE(text.find("h_bucket{le=\"1\"} 3\n"), std::string::npos) << text;
  EXPECT_NE(text.find("h_sum 1.5\n"), std::string::npos) << text;
}

TEST(Auth, BearerSchemeIsCaseInsensitiveAndTheTokenIsNot) {
  EXPECT_EQ(bearer_token("Bearer abc"), "abc");
  EXPECT_EQ(bearer_token("bearer abc"), "abc");
  EXPECT_EQ(bearer_token("BEARER  Abc"), "Abc");
  EXPECT_EQ(bearer_token("Basic abc"), "");
  EXPECT_EQ(bearer_token("Bearer"), "");
  EXPECT_TRUE(constant_time_equal("Abc", "Abc"));
  EXPECT_FALSE(constant_time_equal("Abc", "abc"));
}

TEST(HttpServer, ManyUploadsAtOnceStayWithinTheMemoryBudget) {
  HttpLimits limits;
  limits.max_body_bytes = 1 << 20;
  limits.max_buffered_bytes = 1 << 20;  // room for one large upload at a time
  HttpServer server(limits, {[](const HttpRequest& req, HttpResponse& res) {
                               send_json(res, 200, {{"bytes", req.body.size()}});
                             },
                             render_error});
  server.start("127.0.0.1", 0);
  const std::string head =
      "POST /api/x HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 700000\r\n\r\n";
  const int first = testing_support::connect_to(server.port()),
            second = testing_support::connect_to(server.port());
  ASSERT_GE(first, 0);
  ASSERT_GE(second, 0);
  testing_support::send_all(first, head + std::string(600000, 'a'));  // held: 600 kB
  // Wait until the server holds it (the limit only catches a hang).
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (server.stats().body_bytes_held < 600000 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  ASSERT_GE(server.stats().body_bytes_held, 600000u);
  testing_support::send_all(second, head + std::string(700000, 'b'));  // would pass the 1 MB budget
  EXPECT_EQ(testing_support::status_of(testing_support::read_until_closed(second, 5000)), 503);
  ::close(second);
  testing_support::send_all(first, std::string(100000, 'a'));
  EXPECT_EQ(testing_support::status_of(testing_support::read_until_closed(first, 5000)), 200);
  ::close(first);
  server.stop();
}
