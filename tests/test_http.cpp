// The torch-free HTTP pieces: routing, error bodies, metrics text, the Authorization header.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "serve/http_util.h"
#include "serve/prometheus.h"
#include "serve/render.h"
#include "serve/router.h"

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
