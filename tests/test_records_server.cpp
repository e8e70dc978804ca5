// The lab workflow over HTTP against the real server binary with its records: a slide from
// creation to signed report, who may do what, bad input, and a server killed mid-upload.
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <regex>

#include "server_fixture.h"
#include "store/slide_store.h"

namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using testing_support::ServerProcess;

std::string field_path(int i) {
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(testing_support::data_root() + "/fields/iml/images"))
    files.push_back(e.path());
  std::sort(files.begin(), files.end());
  return files.at(size_t(i)).string();
}

std::string run(const std::string& command) {
  FILE* p = ::popen((command + " 2>/dev/null").c_str(), "r");
  std::string out;
  char buf[256];
  while (size_t n = fread(buf, 1, sizeof buf, p)) out.append(buf, n);
  EXPECT_EQ(::pclose(p), 0) << command;
  while (!out.empty() && out.back() == '\n') out.pop_back();
  return out.substr(out.rfind('\n') == std::string::npos ? 0 : out.rfind('\n') + 1);
}

class Records : public ::testing::Test {
 protected:
  void SetUp() override {
    MALARIA_REQUIRE_DIR(testing_support::data_root() + "/fields/iml/images");
    dir_ = fs::temp_directory_path() /
           ("malaria-records-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    store_ = "sqlite:" + (dir_ / "records.db").string();
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::unique_ptr<ServerProcess> start(std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {"--store", store_};
    args.insert(args.end(), extra.begin(), extra.end());
    return std::make_unique<ServerProcess>(args);
  }

  static httplib::Headers auth(const std::string& token) {
    return token.empty() ? httplib::Headers{}
                         : httplib::Headers{{"Authorization", "Bearer " + token}};
  }

  static std::string create_slide(httplib::Client& c, const std::string& token = "",
                                  const std::string& site = "north") {
    const auto r = c.Post("/api/v1/slides", auth(token),
                          json{{"sample_id", "S-42"},
                               {"site", site},
                               {"stain", "Giemsa"},
                               {"operator", "amy"},
                               {"collected_on", "2026-11-29"}}
                              .dump(),
                          "application/json");
    EXPECT_EQ(r->status, 201) << r->body;
    EXPECT_EQ(r->get_header_value("Location"),
              "/api/v1/slides/" + json::parse(r->body)["id"].get<std::string>());
    return json::parse(r->body)["id"];
  }

  static httplib::Result upload(httplib::Client& c, const std::string& slide,
                                const std::string& file, const std::string& key = "",
                                const std::string& token = "") {
    httplib::Headers headers = auth(token);
    if (!key.empty()) headers.emplace("Idempotency-Key", key);
    httplib::MultipartFormDataItems items = {{"file", testing_support::read_bytes(file),
                                              fs::path(file).filename().string(), "image/jpeg"}};
    return c.Post(("/api/v1/slides/" + slide + "/fields").c_str(), headers, items);
  }

  static json get(httplib::Client& c, const std::string& path, const std::string& token = "") {
    const auto r = c.Get(path.c_str(), auth(token));
    EXPECT_EQ(r->status, 200) << path << " " << r->body;
    return json::parse(r->body);
  }

  static int review(httplib::Client& c, const std::string& cell, const json& body,
                    const std::string& token = "") {
    return c
        .Post(("/api/v1/cells/" + cell + "/review").c_str(), auth(token), body.dump(),
              "application/json")
        ->status;
  }

  fs::path dir_;
  std::string store_;
};

// FHIR R4 structure rules for what the report uses (the resource definitions' cardinalities and
// value sets): every failure is named.
std::vector<std::string> fhir_problems(const json& bundle) {
  std::vector<std::string> problems;
  auto need = [&](bool ok, const std::string& what) {
    if (!ok) problems.push_back(what);
  };
  const std::regex date_time(
      R"(\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2}))?)");
  const std::regex instant(R"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2}))");
  const std::set<std::string> report_status = {
      "registered", "partial",   "preliminary",      "final",  "amended", "corrected",
      "appended",   "cancelled", "entered-in-error", "unknown"};
  const std::set<std::string> observation_status = {"registered",       "preliminary", "final",
                                                    "amended",          "corrected",   "cancelled",
                                                    "entered-in-error", "unknown"};
  auto codeable = [&](const json& c, const std::string& where) {
    need(c.is_object() && c.contains("coding") && c["coding"].is_array() && !c["coding"].empty(),
         where + ": CodeableConcept without coding");
    if (c.contains("coding"))
      for (const auto& coding : c["coding"])
        need(coding.value("system", "").find(':') != std::string::npos && coding.contains("code"),
             where + ": Coding needs a system URI and a code");
  };
  need(bundle.value("resourceType", "") == "Bundle", "not a Bundle");
  need(bundle.value("type", "") == "collection", "Bundle.type");
  std::map<std::string, json> by_reference;
  for (const auto& e : bundle.value("entry", json::array())) {
    need(e.contains("fullUrl") && e.contains("resource"), "entry without fullUrl or resource");
    const json& r = e["resource"];
    need(r.contains("id") &&
             std::regex_match(r.value("id", ""), std::regex(R"([A-Za-z0-9\-\.]{1,64})")),
         "resource id");
    by_reference[r.value("resourceType", "") + "/" + r.value("id", "")] = r;
  }
  int reports = 0;
  for (const auto& [ref, r] : by_reference) {
    const std::string type = r.value("resourceType", "");
    if (type == "DiagnosticReport") {
      reports++;
      need(report_status.count(r.value("status", "")) == 1, ref + ".status");
      codeable(r.value("code", json()), ref + ".code");
      need(std::regex_match(r.value("effectiveDateTime", ""), date_time),
           ref + ".effectiveDateTime");
      need(std::regex_match(r.value("issued", ""), instant), ref + ".issued");
      for (const auto& res : r.value("result", json::array()))
        need(by_reference.count(res.value("reference", "")) == 1 &&
                 res["reference"].get<std::string>().rfind("Observation/", 0) == 0,
             ref + ".result does not resolve: " + res.dump());
    } else if (type == "Observation") {
      need(observation_status.count(r.value("status", "")) == 1, ref + ".status");
      codeable(r.value("code", json()), ref + ".code");
      int values = 0;
      for (const auto& [key, v] : r.items())
        if (key.rfind("value", 0) == 0) {
          values++;
          if (key == "valueQuantity")
            need(v["value"].is_number() && v.value("system", "") == "http://unitsofmeasure.org" &&
                     v.contains("code"),
                 ref + ".valueQuantity needs a number and a UCUM code");
          if (key == "valueCodeableConcept") codeable(v, ref + ".valueCodeableConcept");
        }
      need(values == 1, ref + ": exactly one value[x]");
      need(by_reference.count(r["specimen"].value("reference", "")) == 1, ref + ".specimen");
    } else {
      need(type == "Specimen", "unexpected " + type);
    }
  }
  need(reports == 1, "one DiagnosticReport");
  return problems;
}

TEST_F(Records, SlideFromUploadToSignedReportAndCorrections) {
  auto server = start();
  auto c = server->client();
  c.set_read_timeout(120);
  const std::string slide = create_slide(c);
  const auto first = upload(c, slide, field_path(0), "upload-1");
  ASSERT_EQ(first->status, 201) << first->body;
  const json stored = json::parse(first->body);
  ASSERT_EQ(stored["fields"].size(), 1u);
  EXPECT_FALSE(stored["fields"][0]["cells"].empty());
  EXPECT_TRUE(stored["fields"][0]["cells"][0].contains("id"));
  // A retry with the same key is answered from the records and stores nothing new.
  const auto retry = upload(c, slide, field_path(0), "upload-1");
  ASSERT_EQ(retry->status, 200);
  EXPECT_EQ(retry->get_header_value("Idempotent-Replayed"), "true");
  EXPECT_EQ(json::parse(retry->body)["fields"][0]["id"], stored["fields"][0]["id"]);
  // The same key with another image is a client's mistake, not a retry.
  EXPECT_EQ(upload(c, slide, field_path(1), "upload-1")->status, 422);
  EXPECT_EQ(c.Get(("/api/v1/slides/" + slide + "/annotations.csv").c_str())->status, 409);
  ASSERT_EQ(upload(c, slide, field_path(1), "upload-2")->status, 201);
  json s = get(c, "/api/v1/slides/" + slide);
  EXPECT_EQ(s["field_count"], 2);
  EXPECT_EQ(s["status"], "screened");
  ASSERT_FALSE(s["review_queue"].empty());
  EXPECT_EQ(s["summary"]["model"]["cells"], s["summary"]["reviewed"]["cells"]);

  const auto gradcam =
      c.Get(("/api/v1/cells/" + s["review_queue"][0]["cell_id"].get<std::string>() + "/explanation")
                .c_str());
  ASSERT_EQ(gradcam->status, 200) << gradcam->body;
  EXPECT_EQ(gradcam->body.substr(1, 3), "PNG");
  EXPECT_EQ(c.Get("/api/v1/cells/nope/explanation")->status, 404);

  // Signing waits for the review of every flagged cell.
  EXPECT_EQ(c.Post(("/api/v1/slides/" + slide + "/sign").c_str(), "", "application/json")->status,
            409);
  std::string flipped;
  for (const auto& q : s["review_queue"]) {
    const std::string cell = q["cell_id"];
    if (q["why"] == "quality control") {
      EXPECT_EQ(review(c, cell, {{"decision", "Uninfected"}}), 200);
    } else if (flipped.empty()) {
      EXPECT_EQ(review(c, cell, {{"decision", "Uninfected"}}), 200);  // a false positive
      flipped = cell;
    } else {
      EXPECT_EQ(review(c, cell, {{"decision", "Parasitized"}, {"stage", "ring"}}), 200);
    }
  }
  s = get(c, "/api/v1/slides/" + slide);
  EXPECT_EQ(s["status"], "in_review");
  EXPECT_EQ(s["summary"]["reviewed"]["pending"], 0);
  // Every cell outside the queue is an unflagged Uninfected one: the reviewed count is the
  // flagged cells less the one turned down.
  size_t flagged = 0;
  for (const auto& q : s["review_queue"]) flagged += q["why"] != "quality control";
  EXPECT_EQ(s["summary"]["reviewed"]["parasitized"].get<size_t>(), flagged - 1);
  EXPECT_EQ(c.Post(("/api/v1/slides/" + slide + "/sign").c_str(), "", "application/json")->status,
            200);
  EXPECT_EQ(review(c, flipped, {{"decision", "Parasitized"}}), 409);  // frozen
  EXPECT_EQ(review(c, flipped, {{"decision", "Parasitized"}, {"reason", "second look"}}), 200);
  EXPECT_EQ(get(c, "/api/v1/slides/" + slide)["status"], "amended");
  EXPECT_EQ(c.Post(("/api/v1/slides/" + slide + "/sign").c_str(), "", "application/json")->status,
            200);
  EXPECT_EQ(upload(c, slide, field_path(2))->status, 409);  // no fields after signing

  const json audit = get(c, "/api/v1/slides/" + slide + "/audit");
  std::vector<std::string> actions;
  for (const auto& e : audit["events"]) actions.push_back(e["action"]);
  EXPECT_EQ(actions.front(), "create");
  EXPECT_EQ(std::count(actions.begin(), actions.end(), "add_field"), 2);
  EXPECT_EQ(std::count(actions.begin(), actions.end(), "sign"), 2);
  EXPECT_EQ(std::count(actions.begin(), actions.end(), "amend"), 1);

  const auto html = c.Get(("/api/v1/slides/" + slide + "/report").c_str());
  ASSERT_EQ(html->status, 200);
  EXPECT_NE(html->body.find("S-42"), std::string::npos);
  EXPECT_NE(html->body.find("Assistive tool"), std::string::npos);
  EXPECT_NE(html->body.find("data:image/png;base64,"), std::string::npos);  // positive cells
  EXPECT_EQ(html->body.find("NOT SIGNED"), std::string::npos);
  const auto fhir = c.Get(("/api/v1/slides/" + slide + "/report?format=fhir").c_str());
  ASSERT_EQ(fhir->status, 200);
  EXPECT_EQ(fhir->get_header_value("Content-Type"), "application/fhir+json");
  const json bundle = json::parse(fhir->body);
  EXPECT_EQ(fhir_problems(bundle), std::vector<std::string>{});
  EXPECT_EQ(bundle["entry"][0]["resource"]["status"], "amended");  // signed again after a change
  const auto pdf = c.Get(("/api/v1/slides/" + slide + "/report?format=pdf").c_str());
  ASSERT_EQ(pdf->status, 200) << pdf->body;
  EXPECT_EQ(pdf->body.rfind("%PDF-", 0), 0u);
  EXPECT_EQ(c.Get(("/api/v1/slides/" + slide + "/report?format=docx").c_str())->status, 400);

  const auto csv = c.Get(("/api/v1/slides/" + slide + "/annotations.csv").c_str());
  ASSERT_EQ(csv->status, 200);
  EXPECT_EQ(csv->body.rfind("image,x,y,w,h,label,group\n", 0), 0u);
  EXPECT_NE(csv->body.find(",ring," + slide), std::string::npos);  // the reviewer's stage
  const std::string image = stored["fields"][0]["id"].get<std::string>();
  const auto kept = c.Get(("/api/v1/fields/" + image + "/image").c_str());
  ASSERT_EQ(kept->status, 200);
  EXPECT_EQ(kept->body, testing_support::read_bytes(field_path(0)));

  // Everything is still there after a restart.
  const json before_restart = get(c, "/api/v1/slides/" + slide);
  server.reset();
  server = start();
  auto again = server->client();
  const json after = get(again, "/api/v1/slides/" + slide);
  EXPECT_EQ(after["status"], "signed");
  EXPECT_EQ(after["summary"], before_restart["summary"]);
  EXPECT_EQ(after["fields"], before_restart["fields"]);
  EXPECT_EQ(get(again, "/api/v1/slides?status=signed")["total"], 1);
}

TEST_F(Records, RolesAndSitesAreEnforced) {
  const std::string bin = MALARIA_BIN;
  const std::string tech =
      run(bin + " users add tom --role technician --site north --store " + store_);
  const std::string rev =
      run(bin + " users add rita --role reviewer --site north --store " + store_);
  const std::string south =
      run(bin + " users add sam --role reviewer --site south --store " + store_);
  auto server = start({"--api-key", "k3y"});
  auto c = server->client();
  c.set_read_timeout(120);
  EXPECT_EQ(c.Get("/api/v1/slides")->status, 401);  // users exist: no anonymous access
  EXPECT_EQ(c.Get("/api/v1/slides", auth("mal_0000000000000000_" + std::string(64, '0')))->status,
            401);
  EXPECT_EQ(c.Post("/api/v1/predict", "", "image/png")->status, 401);
  EXPECT_EQ(get(c, "/api/v1/me", tech)["role"], "technician");
  const std::string slide = create_slide(c, tech);
  ASSERT_EQ(upload(c, slide, field_path(3), "", tech)->status, 201);
  const json s = get(c, "/api/v1/slides/" + slide, tech);
  const std::string cell = s["review_queue"][0]["cell_id"];
  EXPECT_EQ(review(c, cell, {{"decision", "Uninfected"}}, tech), 403);
  EXPECT_EQ(
      c.Post(("/api/v1/slides/" + slide + "/sign").c_str(), auth(tech), "", "application/json")
          ->status,
      403);
  // Another site's reviewer sees nothing of it.
  EXPECT_EQ(c.Get(("/api/v1/slides/" + slide).c_str(), auth(south))->status, 404);
  EXPECT_EQ(review(c, cell, {{"decision", "Uninfected"}}, south), 404);
  EXPECT_EQ(get(c, "/api/v1/slides", south)["total"], 0);
  const auto wrong_site =
      c.Post("/api/v1/slides", auth(tech), json{{"sample_id", "X"}, {"site", "south"}}.dump(),
             "application/json");
  EXPECT_EQ(wrong_site->status, 403);
  EXPECT_EQ(review(c, cell, {{"decision", "Uninfected"}}, rev), 200);
  // The API key still works (as an admin) and is named in the audit trail.
  EXPECT_EQ(review(c, cell, {{"decision", "Parasitized"}, {"stage", "ring"}}, "k3y"), 200);
  const json audit = get(c, "/api/v1/slides/" + slide + "/audit", rev);
  EXPECT_EQ(audit["events"][0]["user"], "tom");
  EXPECT_EQ(audit["events"].back()["user"], "api-key");
  EXPECT_EQ(audit["events"][audit["events"].size() - 2]["user"], "rita");
  // An admin of one site cannot make users that see more.
  const std::string north_admin =
      run(bin + " users add ada --role admin --site north --store " + store_);
  EXPECT_EQ(c.Post("/api/v1/users", auth(north_admin),
                   json{{"name", "z"}, {"role", "admin"}}.dump(), "application/json")
                ->status,
            403);
  // Only an admin manages users; the new token works at once.
  const json nina = {{"name", "nina"}, {"role", "technician"}, {"sites", {"north"}}};
  EXPECT_EQ(c.Post("/api/v1/users", auth(rev), nina.dump(), "application/json")->status, 403);
  EXPECT_EQ(c.Get("/api/v1/users", auth(tech))->status, 403);
  const auto added = c.Post("/api/v1/users", auth("k3y"), nina.dump(), "application/json");
  ASSERT_EQ(added->status, 201) << added->body;
  const std::string nina_token = json::parse(added->body)["token"];
  EXPECT_EQ(get(c, "/api/v1/me", nina_token)["name"], "nina");
  EXPECT_EQ(c.Post("/api/v1/users", auth("k3y"), nina.dump(), "application/json")->status, 409);
  EXPECT_EQ(get(c, "/api/v1/users", "k3y")["users"].size(), 5u);
  EXPECT_EQ(get(c, "/api/v1/users", "k3y").dump().find(nina_token.substr(21)), std::string::npos);
  // Adding a user is an audit event naming who did it.
  FILE* p = ::popen((bin + " store audit --store " + store_).c_str(), "r");
  std::string out;
  char buf[256];
  while (size_t n = fread(buf, 1, sizeof buf, p)) out.append(buf, n);
  ::pclose(p);
  const json admin_events = json::parse(out);
  ASSERT_FALSE(admin_events.empty());
  EXPECT_EQ(admin_events.back()["action"], "user_add");
  EXPECT_EQ(admin_events.back()["user"], "api-key");
  EXPECT_EQ(admin_events.back()["after"]["name"], "nina");
  // The API serves the same trail, to an admin of every site only.
  EXPECT_EQ(get(c, "/api/v1/audit", "k3y")["events"], admin_events);
  // An admin issues a new token, valid for a week; the old one stops at once.
  const json week = {{"valid_days", 7}};
  for (const std::string& not_allowed : {rev, north_admin})
    EXPECT_EQ(c.Post("/api/v1/users/nina/token", auth(not_allowed), week.dump(), "application/json")
                  ->status,
              403);
  for (const json& bad : {json{{"valid_days", "7"}}, json{{"valid_days", -1}},
                          json{{"valid_days", 0.5}}, json{{"valid_days", 5000}}})
    EXPECT_EQ(
        c.Post("/api/v1/users/nina/token", auth("k3y"), bad.dump(), "application/json")->status,
        400)
        << bad.dump();
  EXPECT_EQ(c.Post("/api/v1/users", auth("k3y"),
                   json{{"name", "ola"}, {"role", "technician"}, {"valid_days", 9999}}.dump(),
                   "application/json")
                ->status,
            400);
  EXPECT_EQ(
      c.Post("/api/v1/users/nobody/token", auth("k3y"), week.dump(), "application/json")->status,
      404);
  const auto rotated =
      c.Post("/api/v1/users/nina/token", auth("k3y"), week.dump(), "application/json");
  ASSERT_EQ(rotated->status, 201) << rotated->body;
  const std::string nina_week = json::parse(rotated->body)["token"];
  EXPECT_EQ(c.Get("/api/v1/me", auth(nina_token))->status, 401);
  EXPECT_EQ(get(c, "/api/v1/me", nina_week)["name"], "nina");
  EXPECT_TRUE(get(c, "/api/v1/me", nina_week)["token_expires_at"].is_string());
  EXPECT_TRUE(get(c, "/api/v1/me", tech)["token_expires_at"].is_null());
  const json users = get(c, "/api/v1/users", "k3y")["users"];
  bool listed = false;
  for (const auto& u : users)
    if (u["name"] == "nina") listed = u["expires_at"].is_string();
  EXPECT_TRUE(listed) << users.dump();
  // Past its date the token is refused, and its holder is told why.
  malaria::SlideStore(store_).database().transaction([](malaria::SqlSession& s) {
    s.query("UPDATE users SET expires_at = '2020-01-01T00:00:00Z' WHERE name = 'nina'");
  });
  const auto expired = c.Get("/api/v1/me", auth(nina_week));
  EXPECT_EQ(expired->status, 401);
  EXPECT_NE(expired->body.find("expired"), std::string::npos) << expired->body;
  EXPECT_EQ(expired->get_header_value("WWW-Authenticate"), "Bearer error=\"invalid_token\"");
  EXPECT_EQ(c.Get("/api/v1/audit", auth(north_admin))->status, 403);
  EXPECT_EQ(c.Get("/api/v1/audit", auth(rev))->status, 403);
}

TEST_F(Records, BadInputIsRefusedAndStoresNothing) {
  auto server = start();
  auto c = server->client();
  c.set_read_timeout(120);
  EXPECT_EQ(c.Post("/api/v1/slides", "{not json", "application/json")->status, 400);
  EXPECT_EQ(c.Post("/api/v1/slides", "[]", "application/json")->status, 400);
  EXPECT_EQ(c.Post("/api/v1/slides", json{{"site", "x"}}.dump(), "application/json")->status, 400);
  // A body another web page could send without a preflight is refused.
  EXPECT_EQ(c.Post("/api/v1/slides", json{{"sample_id", "x"}}.dump(), "text/plain")->status, 415);
  // The local user answers only to a loopback host name (no DNS rebinding).
  EXPECT_EQ(c.Get("/api/v1/slides", {{"Host", "attacker.example"}})->status, 401);
  EXPECT_EQ(c.Post("/api/v1/slides", json{{"sample_id", "x"}, {"collected_on", "yesterday"}}.dump(),
                   "application/json")
                ->status,
            400);
  const std::string slide = create_slide(c);
  const std::string bad = (dir_ / "bad.jpg").string();
  testing_support::write_bytes(bad, "not an image at all");
  EXPECT_EQ(upload(c, slide, bad)->status, 415);
  EXPECT_EQ(upload(c, "s-nope", field_path(0))->status, 404);
  EXPECT_EQ(get(c, "/api/v1/slides/" + slide)["field_count"], 0);
  EXPECT_EQ(c.Get("/api/v1/slides/nope")->status, 404);
  EXPECT_EQ(c.Get("/api/v1/slides?limit=many")->status, 400);
  EXPECT_EQ(c.Get("/api/v1/slides?from=29/11/2026")->status, 400);
  EXPECT_EQ(review(c, "c-nope", {{"decision", "Uninfected"}}), 404);
  EXPECT_EQ(c.Post("/api/v1/cells/x/review", "null", "application/json")->status, 400);
  EXPECT_EQ(c.Delete(("/api/v1/slides/" + slide).c_str())->status, 405);
  EXPECT_EQ(c.Get("/api/v1/fields/nope/image")->status, 404);
}

// Records on a public address with nobody able to sign in would make every caller an admin.
TEST_F(Records, PublicAddressWithoutUsersOrKeyIsRefused) {
  const std::string cmd = std::string(MALARIA_BIN) +
                          " serve --model " MALARIA_TEST_MODEL " --host 0.0.0.0 --port 0 --store " +
                          store_ + " 2>&1";
  FILE* p = ::popen(cmd.c_str(), "r");
  std::string out;
  char buf[256];
  while (size_t n = fread(buf, 1, sizeof buf, p)) out.append(buf, n);
  EXPECT_NE(::pclose(p), 0);
  EXPECT_NE(out.find("nobody to sign in"), std::string::npos) << out;
}

// kill -9 while an upload is in the server: on restart the slide holds the whole field or nothing,
// and retrying with the same Idempotency-Key leaves exactly one.
TEST_F(Records, KilledMidUploadLeavesWholeFieldOrNothing) {
  std::string slide;
  {
    auto server = start();
    auto c = server->client();
    slide = create_slide(c);
    const std::string body_file = field_path(4);
    std::thread uploader([&] {
      auto u = server->client();
      upload(u, slide, body_file, "k-1");  // fails when the server dies: fine
    });
    // Killed once the screening has begun (observable in /metrics), before it can answer.
    ASSERT_TRUE(testing_support::wait_for_metric(
        server->port(), "malaria_work_admitted{kind=\"screen\"}", [](double v) { return v > 0; }));
    ::kill(server->pid(), SIGKILL);
    server->wait_exit();
    uploader.join();
  }
  auto server = start();
  auto c = server->client();
  c.set_read_timeout(120);
  const json s = get(c, "/api/v1/slides/" + slide);
  ASSERT_LE(s["field_count"].get<int>(), 1);
  if (s["field_count"] == 1) {  // stored whole before the kill: every cell is there
    EXPECT_EQ(s["fields"][0]["cells"].size(), s["fields"][0]["summary"]["cells"].get<size_t>());
  }
  const auto retried = upload(c, slide, field_path(4), "k-1");
  ASSERT_TRUE(retried->status == 200 || retried->status == 201) << retried->body;
  EXPECT_EQ(get(c, "/api/v1/slides/" + slide)["field_count"], 1);
}

// PostgreSQL going away: requests are 503 (retry), /ready says so (a balancer stops sending work
// here), and when the database is back the server reconnects without a restart.
TEST_F(Records, DatabaseOutageIs503AndRecovers) {
  const std::string pg = (dir_ / "pg").string();
  const std::string script = std::string("bash ") + MALARIA_SOURCE_DIR + "/tests/pg_temp.sh ";
  const std::string url = run(script + "start " + pg);
  auto server = std::make_unique<ServerProcess>(std::vector<std::string>{"--store", url});
  auto c = server->client();
  const std::string slide = create_slide(c);
  run(script + "stop " + pg);
  EXPECT_EQ(c.Get(("/api/v1/slides/" + slide).c_str())->status, 503);
  EXPECT_EQ(c.Get("/ready")->status, 503);
  EXPECT_EQ(c.Get("/health")->status, 200);  // alive, only not ready
  run(script + "resume " + pg);
  ASSERT_TRUE(testing_support::wait_until([&] { return c.Get("/ready")->status == 200; }));
  EXPECT_EQ(get(c, "/api/v1/slides/" + slide)["sample_id"], "S-42");
  server.reset();
  run(script + "stop " + pg);
}

}  // namespace
