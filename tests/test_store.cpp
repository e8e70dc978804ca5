// The records' behaviour, run against both stores: SQLite in a temporary file and a real
// PostgreSQL (Debian's server started by tests/pg_temp.sh in a temporary folder).
#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <thread>

#include "report/slide_report.h"
#include "store/slide_store.h"
#include "util/files.h"

namespace malaria {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

std::string run_command(const std::string& command) {
  std::string out;
  FILE* pipe = popen(command.c_str(), "r");
  if (!pipe) throw std::runtime_error("cannot run " + command);
  char buf[512];
  while (fgets(buf, sizeof buf, pipe)) out += buf;
  if (pclose(pipe) != 0) throw std::runtime_error("failed: " + command + "\n" + out);
  while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
  const size_t last_line = out.rfind('\n');
  return last_line == std::string::npos ? out : out.substr(last_line + 1);
}

// One PostgreSQL server for the whole test binary; each test gets its own database.
class Postgres : public ::testing::Environment {
 public:
  static inline std::string dir;
  void SetUp() override {
    dir = (fs::temp_directory_path() / ("malaria-pg-" + std::to_string(::getpid()))).string();
    fs::remove_all(dir);
    run_command("bash " MALARIA_SOURCE_DIR "/tests/pg_temp.sh start " + dir);
  }
  void TearDown() override {
    run_command("bash " MALARIA_SOURCE_DIR "/tests/pg_temp.sh stop " + dir);
    fs::remove_all(dir);
  }
};
const auto* const kPostgres = ::testing::AddGlobalTestEnvironment(new Postgres);

User person(const std::string& name, const std::string& role, std::vector<std::string> sites = {}) {
  return User{"id-" + name, name, role, std::move(sites), "", ""};
}

class StoreTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    url_ = new_url();
    store_ = std::make_unique<SlideStore>(url_);
  }
  void TearDown() override {
    store_.reset();
    if (!sqlite_path_.empty()) fs::remove_all(fs::path(sqlite_path_).parent_path());
  }

  std::string new_url() {
    static std::atomic<int> counter{0};
    const std::string name = "t" + std::to_string(::getpid()) + "_" + std::to_string(counter++);
    if (GetParam() == "postgres")
      return run_command("bash " MALARIA_SOURCE_DIR "/tests/pg_temp.sh createdb " + Postgres::dir +
                         " " + name);
    const fs::path dir = fs::temp_directory_path() / ("malaria-store-" + name);
    fs::create_directories(dir);
    sqlite_path_ = (dir / "records.db").string();
    return "sqlite:" + sqlite_path_;
  }

  static FieldInput field(int cells, const std::string& name = "field-1.jpg") {
    FieldInput f;
    f.filename = name;
    f.image_format = "jpeg";
    f.image = std::string("\xff\xd8\x00\x01 binary \x00 bytes", 17);
    f.width = 640;
    f.height = 480;
    f.quality_verdict = "pass";
    f.result = {{"quality", {{"verdict", "pass"}}}, {"summary", {{"cells", cells}}}};
    f.model_id = "model-abc";
    for (int i = 0; i < cells; ++i) {
      StoredCell c;
      c.x = 10 * i;
      c.y = 5;
      c.width = 30;
      c.height = 31;
      c.probability = i % 3 == 0 ? 0.97 : 0.02;
      c.decision = i % 3 == 0 ? "Parasitized" : "Uninfected";
      c.label = c.decision;
      c.stage = i % 3 == 0 ? "ring" : "";
      f.cells.push_back(c);
    }
    return f;
  }

  // Reviews every cell of the slide's review queue as the model called it.
  void review_all(const std::string& slide_id) {
    const auto fields = store_->fields(slide_id, admin_);
    std::map<std::string, std::string> labels;
    for (const auto& f : fields)
      for (const auto& c : f.cells) labels[c.id] = c.label.empty() ? "Uninfected" : c.label;
    for (const auto& q : review_queue(fields))
      store_->review_cell(q["cell_id"], labels[q["cell_id"].get<std::string>()], "", "", reviewer_);
  }

  static void expect_status(const std::function<void()>& call, int status) {
    try {
      call();
      ADD_FAILURE() << "not refused";
    } catch (const StoreError& e) {
      EXPECT_EQ(e.status, status) << e.what();
    }
  }

  Slide new_slide(const std::string& site = "north") {
    return store_->create_slide(
        SlideInfo::from_json({{"sample_id", "S-001"}, {"site", site}, {"stain", "Giemsa"}}),
        admin_);
  }

  std::string url_, sqlite_path_;
  std::unique_ptr<SlideStore> store_;
  User admin_ = person("ada", kRoleAdmin), tech_ = person("tom", kRoleTechnician),
       reviewer_ = person("rita", kRoleReviewer);
};

TEST_P(StoreTest, SchemaIsMigratedOnceAndReopens) {
  EXPECT_EQ(store_->schema_version(), 2);
  const Slide slide = new_slide();
  store_.reset();
  store_ = std::make_unique<SlideStore>(url_);  // reopening finds the schema and the records
  EXPECT_EQ(store_->schema_version(), 2);
  EXPECT_EQ(store_->slide(slide.id, admin_).info.sample_id, "S-001");
}

TEST_P(StoreTest, DatabaseOfTheFirstSchemaIsUpgraded) {
  const std::string token = store_->add_user("rita", kRoleReviewer, {});
  // Back to what the first release wrote: no token expiry.
  store_->database().transaction([](SqlSession& s) {
    s.query("ALTER TABLE users DROP COLUMN expires_at");
    s.query("DELETE FROM schema_version WHERE version = 2");
  });
  store_.reset();
  store_ = std::make_unique<SlideStore>(url_);
  EXPECT_EQ(store_->schema_version(), 2);
  const auto user = store_->authenticate(token);  // old tokens keep working, with no expiry
  ASSERT_TRUE(user);
  EXPECT_EQ(user->expires_at, "");
}

TEST_P(StoreTest, TokensExpireAndRotate) {
  const std::string token = store_->add_user("rita", kRoleReviewer, {}, "ada", 30);
  const auto user = store_->authenticate(token);
  ASSERT_TRUE(user);
  EXPECT_GT(user->expires_at, now_iso8601());
  EXPECT_LT(user->expires_at, iso8601_from_now(31));
  EXPECT_EQ(store_->users().at(0).expires_at, user->expires_at);
  for (double bad : {-1.0, 0.5, 3651.0, std::nan(""), HUGE_VAL})
    expect_status([&] { store_->add_user("bob", kRoleAdmin, {}, "ada", bad); }, 400);
  // Past its date the token is refused with a reason; a wrong token still learns nothing.
  store_->database().transaction([](SqlSession& s) {
    s.query("UPDATE users SET expires_at = '2020-01-01T00:00:00Z' WHERE name = 'rita'");
  });
  expect_status([&] { store_->authenticate(token); }, 401);
  std::string tampered = token;
  tampered.back() = tampered.back() == '0' ? '1' : '0';
  EXPECT_FALSE(store_->authenticate(tampered));
  // A new token works at once, the old one never again; both are audited with who did it.
  const std::string fresh = store_->rotate_token("rita", "ada");
  ASSERT_TRUE(store_->authenticate(fresh));
  EXPECT_EQ(store_->authenticate(fresh)->expires_at, "");
  EXPECT_FALSE(store_->authenticate(token));
  EXPECT_EQ(fresh.substr(0, 21), token.substr(0, 21));  // the same user id
  EXPECT_THROW(store_->rotate_token("nobody", "ada"), StoreError);
  const auto events = store_->admin_audit();
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].after["expires_at"], user->expires_at);
  EXPECT_EQ(events[1].action, "user_token");
  EXPECT_EQ(events[1].user, "ada");
}

TEST_P(StoreTest, SlideInfoIsValidated) {
  EXPECT_THROW(SlideInfo::from_json({{"site", "x"}}), StoreError);  // no sample id
  EXPECT_THROW(SlideInfo::from_json({{"sample_id", "a"}, {"collected_on", "2026-13-01"}}),
               StoreError);
  EXPECT_THROW(SlideInfo::from_json({{"sample_id", "a\x01"}}), StoreError);
  EXPECT_THROW(SlideInfo::from_json({{"sample_id", 12}}), StoreError);
  EXPECT_THROW(SlideInfo::from_json({{"sample_id", "a"}, {"rbc_per_ul", 12}}), StoreError);
  EXPECT_THROW(SlideInfo::from_json(json::array()), StoreError);
  const SlideInfo ok = SlideInfo::from_json(
      {{"sample_id", "A-1"}, {"collected_on", "2026-11-29"}, {"rbc_per_ul", 4.5e6}});
  EXPECT_EQ(ok.collected_on, "2026-11-29");
  EXPECT_DOUBLE_EQ(*ok.rbc_per_ul, 4.5e6);
}

TEST_P(StoreTest, ListsFiltersAndPages) {
  for (int i = 0; i < 5; ++i) new_slide(i < 3 ? "north" : "south");
  size_t total = 0;
  EXPECT_EQ(store_->list_slides({}, admin_, &total).size(), 5u);
  EXPECT_EQ(total, 5u);
  SlideFilter south;
  south.site = "south";
  EXPECT_EQ(store_->list_slides(south, admin_, &total).size(), 2u);
  SlideFilter page;
  page.limit = 2;
  page.offset = 4;
  EXPECT_EQ(store_->list_slides(page, admin_, &total).size(), 1u);
  EXPECT_EQ(total, 5u);
  SlideFilter future;
  future.from = "2999-01-01";
  EXPECT_TRUE(store_->list_slides(future, admin_, &total).empty());
  SlideFilter signed_only;
  signed_only.status = "signed";
  EXPECT_TRUE(store_->list_slides(signed_only, admin_, &total).empty());
}

TEST_P(StoreTest, FieldWithCellsAndImageRoundTrips) {
  const Slide slide = new_slide();
  const FieldInput input = field(7);
  const std::string id = store_->add_field(slide.id, input, "", tech_);
  const auto fields = store_->fields(slide.id, admin_);
  ASSERT_EQ(fields.size(), 1u);
  EXPECT_EQ(fields[0].id, id);
  EXPECT_EQ(fields[0].seq, 1);
  EXPECT_EQ(fields[0].result["summary"]["cells"], 7);
  ASSERT_EQ(fields[0].cells.size(), 7u);
  EXPECT_EQ(fields[0].cells[3].x, 30);
  EXPECT_EQ(fields[0].cells[3].decision, "Parasitized");
  EXPECT_EQ(fields[0].cells[3].stage, "ring");
  EXPECT_NEAR(fields[0].cells[3].probability, 0.97, 1e-6);
  EXPECT_FALSE(fields[0].cells[3].review);
  const auto [format, bytes] = store_->field_image(id, admin_);
  EXPECT_EQ(format, "jpeg");
  EXPECT_EQ(bytes, input.image);  // binary, NUL bytes included
  EXPECT_EQ(store_->slide(slide.id, admin_).fields, 1);
  EXPECT_THROW(store_->field_image("nope", admin_), StoreError);
}

TEST_P(StoreTest, IdempotencyKeyStoresOnce) {
  const Slide slide = new_slide();
  const std::string first = store_->add_field(slide.id, field(3), "key-1", tech_);
  const std::string again = store_->add_field(slide.id, field(3), "key-1", tech_);
  EXPECT_EQ(first, again);
  EXPECT_EQ(*store_->field_for_key(slide.id, "key-1", field(3).image), first);
  // Concurrent retries of one upload: exactly one field.
  std::vector<std::thread> threads;
  std::vector<std::string> ids(6);
  for (size_t t = 0; t < ids.size(); ++t)
    threads.emplace_back(
        [&, t] { ids[t] = store_->add_field(slide.id, field(4), "key-2", tech_); });
  for (auto& t : threads) t.join();
  for (const auto& id : ids) EXPECT_EQ(id, ids[0]);
  EXPECT_EQ(store_->fields(slide.id, admin_).size(), 2u);
}

TEST_P(StoreTest, FailedTransactionLeavesNothing) {
  const Slide slide = new_slide();
  EXPECT_THROW(store_->database().transaction([&](SqlSession& s) {
    s.query("DELETE FROM cells");
    s.query("UPDATE slides SET status = 'broken'");
    throw std::runtime_error("crash in the middle");
  }),
               std::runtime_error);
  EXPECT_EQ(store_->slide(slide.id, admin_).status, "screened");
  // A field refused after its first rows were written (a duplicate cell id in the second
  // batch of 100) leaves no field row, no image and no cell.
  EXPECT_THROW(store_->database().transaction([&](SqlSession& s) {
    s.query(
        "INSERT INTO cells (id, field_id, seq, x, y, w, h, probability, label, decision, stage) "
        "VALUES ('dup', 'f', 1, 0, 0, 1, 1, 0.5, 'Uninfected', 'Uninfected', '')");
    s.query(
        "INSERT INTO cells (id, field_id, seq, x, y, w, h, probability, label, decision, stage) "
        "VALUES ('dup', 'f', 2, 0, 0, 1, 1, 0.5, 'Uninfected', 'Uninfected', '')");
  }),
               std::exception);
  EXPECT_THROW(store_->add_field("no-such-slide", field(150), "", tech_), StoreError);
  EXPECT_TRUE(store_->fields(slide.id, admin_).empty());
  store_->database().transaction([](SqlSession& s) {
    EXPECT_EQ(s.query("SELECT COUNT(*) FROM cells").at(0).at(0), "0");
    EXPECT_EQ(s.query("SELECT COUNT(*) FROM field_images").at(0).at(0), "0");
  });
}

TEST_P(StoreTest, ReviewIsForReviewersAndAudited) {
  const Slide slide = new_slide();
  store_->add_field(slide.id, field(4), "", tech_);
  const std::string cell = store_->fields(slide.id, admin_)[0].cells[0].id;
  try {
    store_->review_cell(cell, "Uninfected", "", "", tech_);
    FAIL() << "a technician reviewed";
  } catch (const StoreError& e) {
    EXPECT_EQ(e.status, 403);
  }
  EXPECT_THROW(store_->review_cell(cell, "Maybe", "", "", reviewer_), StoreError);
  EXPECT_THROW(store_->review_cell(cell, "Uninfected", "ring", "", reviewer_), StoreError);
  EXPECT_THROW(store_->review_cell(cell, "Parasitized", "blob", "", reviewer_), StoreError);
  EXPECT_THROW(store_->review_cell("c-none", "Parasitized", "", "", reviewer_), StoreError);
  const StoredCell reviewed =
      store_->review_cell(cell, "Parasitized", "trophozoite", "", reviewer_);
  EXPECT_EQ(reviewed.review->decision, "Parasitized");
  EXPECT_EQ(reviewed.review->stage, "trophozoite");
  EXPECT_EQ(store_->slide(slide.id, admin_).status, "in_review");
  const auto events = store_->audit(slide.id, admin_);
  ASSERT_EQ(events.size(), 3u);  // create, add_field, review
  EXPECT_EQ(events[2].action, "review");
  EXPECT_EQ(events[2].user, "rita");
  EXPECT_EQ(events[2].model_id, "model-abc");
  EXPECT_EQ(events[2].before["stage"], "ring");
  EXPECT_EQ(events[2].after["review"]["stage"], "trophozoite");
}

TEST_P(StoreTest, SigningFreezesAndChangesBecomeAmendments) {
  const Slide slide = new_slide();
  expect_status([&] { store_->sign_slide(slide.id, reviewer_); }, 409);  // nothing to sign
  FieldInput blurred = field(4, "blurred.jpg");
  blurred.quality_verdict = "fail";
  store_->add_field(slide.id, blurred, "", tech_);
  expect_status([&] { store_->sign_slide(slide.id, reviewer_); }, 409);  // no usable field
  store_->add_field(slide.id, field(3), "", tech_);
  expect_status([&] { store_->sign_slide(slide.id, tech_); }, 403);
  expect_status([&] { store_->sign_slide(slide.id, reviewer_); }, 409);  // flagged cells pending
  review_all(slide.id);
  EXPECT_EQ(store_->sign_slide(slide.id, reviewer_).status, "signed");
  expect_status([&] { store_->sign_slide(slide.id, reviewer_); }, 409);
  expect_status([&] { store_->add_field(slide.id, field(2), "", tech_); }, 409);
  const std::string cell = store_->fields(slide.id, admin_)[1].cells[1].id;
  expect_status([&] { store_->review_cell(cell, "Parasitized", "", "", reviewer_); }, 409);
  store_->review_cell(cell, "Parasitized", "", "missed ring on second look", reviewer_);
  const Slide amended = store_->slide(slide.id, admin_);
  EXPECT_EQ(amended.status, "amended");
  EXPECT_EQ(amended.amendments, 1);
  EXPECT_EQ(store_->sign_slide(slide.id, reviewer_).status, "signed");
  const auto events = store_->audit(slide.id, admin_);
  std::vector<std::string> actions;
  for (const auto& e : events)
    if (e.action != "review") actions.push_back(e.action);
  EXPECT_EQ(actions, (std::vector<std::string>{"create", "add_field", "add_field", "sign", "amend",
                                               "sign"}));
  EXPECT_EQ(events[events.size() - 2].after["reason"], "missed ring on second look");
}

TEST_P(StoreTest, RetriedRequestsAreRecognised) {
  SlideInfo info = SlideInfo::from_json({{"sample_id", "S-9"}, {"site", "north"}});
  const Slide first = store_->create_slide(info, tech_, "create-1");
  EXPECT_EQ(store_->create_slide(info, tech_, "create-1").id, first.id);
  EXPECT_NE(store_->create_slide(info, reviewer_, "create-1").id, first.id);  // keys are per user
  const FieldInput one = field(2), other = field(2, "other.jpg");
  FieldInput different = other;
  different.image += "changed";
  store_->add_field(first.id, one, "k", tech_);
  EXPECT_TRUE(store_->field_for_key(first.id, "k", one.image));
  expect_status([&] { store_->field_for_key(first.id, "k", different.image); }, 422);
  EXPECT_FALSE(store_->field_for_key(first.id, "unused", one.image));
}

TEST_P(StoreTest, AuditTrailIsAppendOnly) {
  const Slide slide = new_slide();
  EXPECT_ANY_THROW(store_->database().transaction(
      [](SqlSession& s) { s.query("UPDATE audit SET user_name = 'mallory'"); }));
  EXPECT_ANY_THROW(
      store_->database().transaction([](SqlSession& s) { s.query("DELETE FROM audit"); }));
  if (GetParam() == "postgres") {
    EXPECT_ANY_THROW(
        store_->database().transaction([](SqlSession& s) { s.query("TRUNCATE audit"); }));
  }
  EXPECT_EQ(store_->audit(slide.id, admin_).at(0).user, "ada");
}

TEST_P(StoreTest, SitesAreKeptApart) {
  const Slide north = new_slide("north"), south = new_slide("south");
  const User north_tech = person("nora", kRoleTechnician, {"north"});
  EXPECT_NO_THROW(store_->slide(north.id, north_tech));
  EXPECT_THROW(store_->slide(south.id, north_tech), StoreError);
  EXPECT_THROW(store_->fields(south.id, north_tech), StoreError);
  EXPECT_THROW(store_->audit(south.id, north_tech), StoreError);
  EXPECT_THROW(store_->add_field(south.id, field(1), "", north_tech), StoreError);
  EXPECT_THROW(store_->create_slide(SlideInfo::from_json({{"sample_id", "x"}, {"site", "south"}}),
                                    north_tech),
               StoreError);
  size_t total = 0;
  const auto seen = store_->list_slides({}, north_tech, &total);
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].id, north.id);
  const std::string south_field = store_->add_field(south.id, field(1), "", admin_);
  EXPECT_THROW(store_->field_image(south_field, north_tech), StoreError);
  // An admin's grant takes effect at the next sign-in.
  const std::string token = store_->add_user("nora", kRoleTechnician, {"north"});
  EXPECT_THROW(store_->slide(south.id, *store_->authenticate(token)), StoreError);
  store_->set_sites("nora", {"north", "south"});
  EXPECT_NO_THROW(store_->slide(south.id, *store_->authenticate(token)));
  EXPECT_THROW(store_->set_sites("nobody", {}), StoreError);
  EXPECT_THROW(store_->set_sites("nora", {"a,b"}), StoreError);
}

TEST_P(StoreTest, TokensAreStoredHashedAndChecked) {
  const std::string token = store_->add_user("rita", kRoleReviewer, {"north", "south"});
  const auto user = store_->authenticate(token);
  ASSERT_TRUE(user);
  EXPECT_EQ(user->name, "rita");
  EXPECT_EQ(user->role, kRoleReviewer);
  EXPECT_EQ(user->sites, (std::vector<std::string>{"north", "south"}));
  std::string tampered = token;
  tampered.back() = tampered.back() == '0' ? '1' : '0';
  EXPECT_FALSE(store_->authenticate(tampered));
  EXPECT_FALSE(store_->authenticate(""));
  EXPECT_FALSE(store_->authenticate("Bearer " + token));
  EXPECT_THROW(store_->add_user("rita", kRoleAdmin, {}), StoreError);
  EXPECT_THROW(store_->add_user("bob", "owner", {}), StoreError);
  for (const char* bad : {"two words", "a/b", "a,b", "a%2F", "", "\xc3\xa9"})
    EXPECT_THROW(store_->add_user(bad, kRoleAdmin, {}), StoreError) << bad;
  EXPECT_NO_THROW(store_->add_user("dr.o-neil_2@lab", kRoleTechnician, {}));
  for (const char* reserved : {"local", "api-key", "cli"})
    EXPECT_THROW(store_->add_user(reserved, kRoleAdmin, {}), StoreError) << reserved;
  EXPECT_EQ(store_->user_count(), 2u);
  const std::string gone = store_->add_user("gone", kRoleTechnician, {});
  ASSERT_TRUE(store_->authenticate(gone));
  store_->remove_user("gone");
  EXPECT_FALSE(store_->authenticate(gone));
  EXPECT_THROW(store_->remove_user("gone"), StoreError);
  store_->set_sites("rita", {"north"}, "ada");
  std::vector<std::string> actions;
  for (const auto& e : store_->admin_audit()) {
    actions.push_back(e.action + ":" + e.user);
    EXPECT_TRUE(e.slide_id.empty());
  }
  EXPECT_EQ(actions, (std::vector<std::string>{"user_add:cli", "user_add:cli", "user_add:cli",
                                               "user_remove:cli", "user_sites:ada"}));
  EXPECT_EQ(store_->admin_audit().back().before["sites"],
            (std::vector<std::string>{"north", "south"}));
  // Only the hash is kept: the secret part of the token appears nowhere in the table.
  store_->database().transaction([&](SqlSession& s) {
    for (const auto& row : s.query("SELECT * FROM users"))
      for (const auto& column : row)
        EXPECT_EQ(column.value_or("").find(token.substr(21)), std::string::npos);
  });
}

TEST_P(StoreTest, PurgeRemovesImagesButKeepsResults) {
  const Slide slide = new_slide();
  const std::string id = store_->add_field(slide.id, field(2), "", tech_);
  EXPECT_EQ(store_->purge_images_older_than(0), 0u);  // still in review: kept
  review_all(slide.id);
  store_->sign_slide(slide.id, reviewer_);
  EXPECT_EQ(store_->purge_images_older_than(1), 0u);  // stored seconds ago
  EXPECT_EQ(store_->purge_images_older_than(0), 1u);
  EXPECT_EQ(store_->admin_audit().back().action, "purge");
  EXPECT_EQ(store_->admin_audit().back().after["images"], 1);
  try {
    store_->field_image(id, admin_);
    FAIL() << "a purged image was served";
  } catch (const StoreError& e) {
    EXPECT_EQ(e.status, 410);
  }
  const auto fields = store_->fields(slide.id, admin_);
  EXPECT_FALSE(fields[0].image_kept);
  EXPECT_EQ(fields[0].cells.size(), 2u);
  EXPECT_THROW(store_->purge_images_older_than(-1), StoreError);
}

TEST(StoreUrl, UnknownSchemesAreRefused) {
  EXPECT_THROW(Database::open("mysql://x"), std::invalid_argument);
  EXPECT_THROW(Database::open("sqlite:"), std::invalid_argument);
  EXPECT_THROW(Database::open("postgresql://nobody@127.0.0.1:1/none"), SqlUnavailable);
}

INSTANTIATE_TEST_SUITE_P(Stores, StoreTest, ::testing::Values("sqlite", "postgres"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace malaria
