#include "store/slide_store.h"

#include <sodium.h>

#include <algorithm>
#include <cmath>
#include <ctime>
#include <set>

#include "field/parasitemia.h"
#include "report/slide_report.h"
#include "util/files.h"
#include "util/text.h"

namespace malaria {

using json = nlohmann::json;

namespace {

// Each entry is one schema version, applied once in order inside a transaction; {blob}, {real}
// and {serial} are the dialect's types. Never edit a shipped entry: append a new one.
const std::vector<std::vector<std::string>> kMigrations = {
    {
        "CREATE TABLE users (id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, role TEXT NOT NULL, "
        "sites TEXT NOT NULL, salt TEXT NOT NULL, token_hash TEXT NOT NULL, "
        "created_at TEXT NOT NULL)",
        "CREATE TABLE slides (id TEXT PRIMARY KEY, sample_id TEXT NOT NULL, site TEXT NOT NULL, "
        "operator_name TEXT NOT NULL, collected_on TEXT NOT NULL, stain TEXT NOT NULL, "
        "notes TEXT NOT NULL, rbc_per_ul {real}, status TEXT NOT NULL, created_at TEXT NOT NULL, "
        "created_by TEXT NOT NULL, signed_at TEXT, signed_by TEXT, "
        "amendments INTEGER NOT NULL DEFAULT 0, idempotency_key TEXT UNIQUE)",
        "CREATE INDEX slides_created ON slides (created_at)",
        "CREATE TABLE fields (id TEXT PRIMARY KEY, slide_id TEXT NOT NULL REFERENCES slides (id), "
        "seq INTEGER NOT NULL, filename TEXT NOT NULL, image_format TEXT NOT NULL, "
        "width INTEGER NOT NULL, height INTEGER NOT NULL, quality_verdict TEXT NOT NULL, "
        "result TEXT NOT NULL, model_id TEXT NOT NULL, idempotency_key TEXT, "
        "image_digest TEXT NOT NULL, "
        "created_at TEXT NOT NULL, created_by TEXT NOT NULL, UNIQUE (slide_id, seq), "
        "UNIQUE (slide_id, idempotency_key))",
        "CREATE TABLE field_images (field_id TEXT PRIMARY KEY REFERENCES fields (id), "
        "data {blob} NOT NULL)",
        "CREATE TABLE cells (id TEXT PRIMARY KEY, field_id TEXT NOT NULL REFERENCES fields (id), "
        "seq INTEGER NOT NULL, x INTEGER NOT NULL, y INTEGER NOT NULL, w INTEGER NOT NULL, "
        "h INTEGER NOT NULL, probability {real} NOT NULL, label TEXT NOT NULL, decision TEXT NOT "
        "NULL, "
        "stage TEXT NOT NULL, review_decision TEXT, review_stage TEXT, reviewed_by TEXT, "
        "reviewed_at TEXT)",
        "CREATE INDEX cells_field ON cells (field_id, seq)",
        "CREATE TABLE audit (seq {serial}, slide_id TEXT, cell_id TEXT, at TEXT NOT NULL, "
        "user_name TEXT NOT NULL, action TEXT NOT NULL, before_state TEXT, after_state TEXT, "
        "model_id TEXT)",
        "CREATE INDEX audit_slide ON audit (slide_id, seq)",
        "{append_only_audit}",
    },
    {
        // Tokens that stop working by themselves (NULL: never).
        "ALTER TABLE users ADD COLUMN expires_at TEXT",
    },
};

SqlValue text_or_null(const std::string& text) {
  return text.empty() ? SqlValue{} : SqlValue::text(text);
}

// The statements one migration entry stands for in this dialect.
std::vector<std::string> dialect_sql(std::string sql, Database::Dialect dialect) {
  const bool pg = dialect == Database::Dialect::postgres;
  if (sql == "{append_only_audit}") {
    if (pg)
      return {
          "CREATE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS "
          "$f$ BEGIN RAISE EXCEPTION 'the audit trail is append-only'; END $f$",
          "CREATE TRIGGER audit_append_only BEFORE UPDATE OR DELETE ON audit "
          "FOR EACH ROW EXECUTE FUNCTION audit_append_only()",
          "CREATE TRIGGER audit_no_truncate BEFORE TRUNCATE ON audit "
          "FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only()"};
    return {
        "CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit BEGIN "
        "SELECT RAISE(ABORT, 'the audit trail is append-only'); END",
        "CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit BEGIN "
        "SELECT RAISE(ABORT, 'the audit trail is append-only'); END"};
  }
  const std::pair<std::string, const char*> types[] = {
      {"{blob}", pg ? "BYTEA" : "BLOB"},
      {"{real}", pg ? "DOUBLE PRECISION" : "REAL"},
      {"{serial}", pg ? "BIGSERIAL PRIMARY KEY" : "INTEGER PRIMARY KEY AUTOINCREMENT"}};
  for (const auto& [from, to] : types)
    for (size_t at; (at = sql.find(from)) != std::string::npos;) sql.replace(at, from.size(), to);
  return {sql};
}

std::string hex_of(const unsigned char* bytes, size_t size) {
  std::string hex(2 * size + 1, '\0');
  sodium_bin2hex(hex.data(), hex.size(), bytes, size);
  hex.pop_back();
  return hex;
}

std::string random_hex(size_t bytes) {
  std::vector<unsigned char> raw(bytes);
  randombytes_buf(raw.data(), raw.size());
  return hex_of(raw.data(), raw.size());
}

// BLAKE2b as hex, keyed when `key` is not empty.
std::string blake2b_hex(const std::string& bytes, const std::vector<unsigned char>& key = {}) {
  unsigned char out[crypto_generichash_BYTES];
  crypto_generichash(out, sizeof out, reinterpret_cast<const unsigned char*>(bytes.data()),
                     bytes.size(), key.empty() ? nullptr : key.data(), key.size());
  return hex_of(out, sizeof out);
}

// A token's secret, hashed with the user's salt: only this is stored.
std::string token_hash(const std::string& secret, const std::string& salt_hex) {
  std::vector<unsigned char> salt(crypto_generichash_KEYBYTES);
  size_t salt_len = 0;
  sodium_hex2bin(salt.data(), salt.size(), salt_hex.data(), salt_hex.size(), nullptr, &salt_len,
                 nullptr);
  salt.resize(salt_len);
  return blake2b_hex(secret, salt);
}

// An upload's digest: a retried request must carry the same bytes as the first.
std::string digest_hex(const std::string& bytes) { return blake2b_hex(bytes); }

std::string text_of(const SqlRow& row, size_t c) { return row.at(c).value_or(""); }
long long int_of(const SqlRow& row, size_t c) { return std::stoll(row.at(c).value_or("0")); }
double real_of(const SqlRow& row, size_t c) { return std::stod(row.at(c).value_or("0")); }

std::vector<std::string> split_sites(const std::string& joined) {
  std::vector<std::string> sites;
  for (size_t start = 0; start < joined.size();) {
    const size_t end = std::min(joined.find(',', start), joined.size());
    if (end > start) sites.push_back(joined.substr(start, end - start));
    start = end + 1;
  }
  return sites;
}

std::string joined_sites(const std::vector<std::string>& sites) {
  std::string joined;
  for (const auto& site : sites) {
    if (site.empty() || site.find(',') != std::string::npos || printable(site, 64) != site)
      throw StoreError(400, "a site name is 1-64 printable characters without commas");
    joined += (joined.empty() ? "" : ",") + site;
  }
  return joined;
}

std::string checked_text(const json& j, const char* key, size_t max, bool required) {
  if (!j.contains(key) || j[key].is_null()) {
    if (required) throw StoreError(400, std::string("'") + key + "' is required");
    return "";
  }
  if (!j[key].is_string()) throw StoreError(400, std::string("'") + key + "' must be a string");
  const std::string s = j[key].get<std::string>();
  if (s.size() > max)
    throw StoreError(
        400, std::string("'") + key + "' is longer than " + std::to_string(max) + " characters");
  if (printable(s, max) != s)
    throw StoreError(400, std::string("'") + key + "' holds control characters or bad UTF-8");
  if (required && s.empty()) throw StoreError(400, std::string("'") + key + "' is empty");
  return s;
}

bool is_iso_date(const std::string& s) {
  std::tm tm{};
  return s.size() == 10 && strptime(s.c_str(), "%Y-%m-%d", &tm) == s.c_str() + 10;
}

const char* kSlideColumns =
    "id, sample_id, site, operator_name, collected_on, stain, notes, rbc_per_ul, status, "
    "created_at, created_by, signed_at, signed_by, "
    "(SELECT COUNT(*) FROM fields f WHERE f.slide_id = slides.id), amendments";

Slide slide_of(const SqlRow& r) {
  Slide s;
  s.id = text_of(r, 0);
  s.info = {text_of(r, 1), text_of(r, 2), text_of(r, 3), text_of(r, 4),
            text_of(r, 5), text_of(r, 6), std::nullopt};
  if (r[7]) s.info.rbc_per_ul = real_of(r, 7);
  s.status = text_of(r, 8);
  s.created_at = text_of(r, 9);
  s.created_by = text_of(r, 10);
  s.signed_at = text_of(r, 11);
  s.signed_by = text_of(r, 12);
  s.fields = int(int_of(r, 13));
  s.amendments = int(int_of(r, 14));
  return s;
}

const char* kCellColumns =
    "cells.id, cells.x, cells.y, cells.w, cells.h, cells.probability, cells.label, "
    "cells.decision, cells.stage, cells.review_decision, cells.review_stage, cells.reviewed_by, "
    "cells.reviewed_at";

StoredCell cell_of(const SqlRow& r, size_t first = 0) {
  StoredCell c;
  c.id = text_of(r, first);
  c.x = int(int_of(r, first + 1));
  c.y = int(int_of(r, first + 2));
  c.width = int(int_of(r, first + 3));
  c.height = int(int_of(r, first + 4));
  c.probability = real_of(r, first + 5);
  c.label = text_of(r, first + 6);
  c.decision = text_of(r, first + 7);
  c.stage = text_of(r, first + 8);
  if (r[first + 9])
    c.review = CellReview{text_of(r, first + 9), text_of(r, first + 10), text_of(r, first + 11),
                          text_of(r, first + 12)};
  return c;
}

void append_audit(SqlSession& s, const std::string& slide_id, const std::string& cell_id,
                  const std::string& user, const std::string& action, const json& before,
                  const json& after, const std::string& model_id) {
  s.query(
      "INSERT INTO audit (slide_id, cell_id, at, user_name, action, before_state, after_state, "
      "model_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
      {text_or_null(slide_id), text_or_null(cell_id), SqlValue::text(now_iso8601()),
       SqlValue::text(user), SqlValue::text(action),
       before.is_null() ? SqlValue{} : SqlValue::text(before.dump()),
       after.is_null() ? SqlValue{} : SqlValue::text(after.dump()), text_or_null(model_id)});
}

}  // namespace

SqlValue SqlValue::real(double v) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.9g", v);
  return text(buf);
}

std::unique_ptr<Database> Database::open(const std::string& url) {
  if (url.rfind("sqlite:", 0) == 0) {
    const std::string path = url.substr(7);
    if (path.empty()) throw std::invalid_argument("sqlite: needs a path, e.g. sqlite:records.db");
    return open_sqlite(path);
  }
  if (url.rfind("postgresql://", 0) == 0 || url.rfind("postgres://", 0) == 0)
    return open_postgres(url);
  throw std::invalid_argument("unknown store '" + printable(url, 80) +
                              "': use sqlite:PATH or postgresql://USER@HOST/DB");
}

bool User::may_see_site(const std::string& site) const {
  return sites.empty() || std::find(sites.begin(), sites.end(), site) != sites.end();
}

json SlideInfo::to_json() const {
  return {{"sample_id", sample_id},
          {"site", site},
          {"operator", operator_name},
          {"collected_on", collected_on.empty() ? json(nullptr) : json(collected_on)},
          {"stain", stain},
          {"notes", notes},
          {"rbc_per_ul", rbc_per_ul ? json(*rbc_per_ul) : json(nullptr)}};
}

SlideInfo SlideInfo::from_json(const json& j) {
  if (!j.is_object()) throw StoreError(400, "the slide must be a JSON object");
  SlideInfo info;
  info.sample_id = checked_text(j, "sample_id", 64, true);
  info.site = checked_text(j, "site", 64, false);
  info.operator_name = checked_text(j, "operator", 64, false);
  info.collected_on = checked_text(j, "collected_on", 10, false);
  if (!info.collected_on.empty() && !is_iso_date(info.collected_on))
    throw StoreError(400, "'collected_on' must be a date, YYYY-MM-DD");
  info.stain = checked_text(j, "stain", 64, false);
  info.notes = checked_text(j, "notes", 2000, false);
  if (j.contains("rbc_per_ul") && !j["rbc_per_ul"].is_null()) {
    if (!j["rbc_per_ul"].is_number() || !(j["rbc_per_ul"].get<double>() >= 1e5) ||
        !(j["rbc_per_ul"].get<double>() <= 1e7))
      throw StoreError(400, "'rbc_per_ul' must be a red-cell count between 100000 and 10000000");
    info.rbc_per_ul = j["rbc_per_ul"].get<double>();
  }
  return info;
}

json Slide::to_json() const {
  json j = info.to_json();
  j["id"] = id;
  j["status"] = status;
  j["created_at"] = created_at;
  j["created_by"] = created_by;
  j["signed_at"] = signed_at.empty() ? json(nullptr) : json(signed_at);
  j["signed_by"] = signed_by.empty() ? json(nullptr) : json(signed_by);
  j["field_count"] = fields;
  j["amendments"] = amendments;
  return j;
}

json StoredCell::to_json() const {
  json j = {{"id", id},
            {"box", {{"x", x}, {"y", y}, {"w", width}, {"h", height}}},
            {"probability_parasitized", probability},
            {"label", label.empty() ? json(nullptr) : json(label)},
            {"decision", decision},
            {"stage", stage.empty() ? json(nullptr) : json(stage)},
            {"review", nullptr}};
  if (review)
    j["review"] = {{"decision", review->decision},
                   {"stage", review->stage.empty() ? json(nullptr) : json(review->stage)},
                   {"by", review->user},
                   {"at", review->at}};
  return j;
}

json StoredField::to_json() const {
  json j = result;
  j["id"] = id;
  j["slide_id"] = slide_id;
  j["seq"] = seq;
  j["file"] = filename;
  j["width"] = width;
  j["height"] = height;
  j["model_id"] = model_id;
  j["created_at"] = created_at;
  j["image_kept"] = image_kept;
  j["cells"] = json::array();
  for (const auto& c : cells) j["cells"].push_back(c.to_json());
  return j;
}

json AuditEvent::to_json() const {
  return {{"seq", seq},
          {"slide_id", slide_id.empty() ? json(nullptr) : json(slide_id)},
          {"cell_id", cell_id.empty() ? json(nullptr) : json(cell_id)},
          {"at", at},
          {"user", user},
          {"action", action},
          {"before", before},
          {"after", after},
          {"model_id", model_id.empty() ? json(nullptr) : json(model_id)}};
}

SlideStore::SlideStore(const std::string& url) : SlideStore(Database::open(url)) {}

SlideStore::SlideStore(std::unique_ptr<Database> db) : db_(std::move(db)) {
  if (sodium_init() < 0) throw std::runtime_error("libsodium could not start");
  migrate();
}

void SlideStore::migrate() {
  db_->transaction([&](SqlSession& s) {
    // Replicas starting together: one migrates, the others wait and then find it done.
    if (db_->dialect() == Database::Dialect::postgres)
      s.query("SELECT pg_advisory_xact_lock(717171)");
    s.query(
        "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, "
        "applied_at TEXT NOT NULL)");
    const SqlRows rows = s.query("SELECT COALESCE(MAX(version), 0) FROM schema_version");
    const size_t current = size_t(int_of(rows.at(0), 0));
    if (current > kMigrations.size())
      throw std::runtime_error("the record database has schema version " + std::to_string(current) +
                               ", newer than this program's " + std::to_string(kMigrations.size()) +
                               ": upgrade the program");
    for (size_t v = current; v < kMigrations.size(); ++v) {
      for (const std::string& entry : kMigrations[v])
        for (const std::string& sql : dialect_sql(entry, db_->dialect())) s.query(sql);
      s.query("INSERT INTO schema_version (version, applied_at) VALUES ($1, $2)",
              {SqlValue::number(static_cast<long long>(v + 1)), SqlValue::text(now_iso8601())});
    }
  });
}

int SlideStore::schema_version() {
  int version = 0;
  db_->read([&](SqlSession& s) {
    version = int(int_of(s.query("SELECT MAX(version) FROM schema_version").at(0), 0));
  });
  return version;
}

namespace {

// The slide, locked for the rest of the transaction when `lock` (PostgreSQL's row lock; SQLite's
// writer lock already covers it), or 404 when it does not exist or `by` may not see its site.
Slide find_slide(SqlSession& s, const std::string& id, const User& by, bool lock,
                 Database::Dialect dialect) {
  const std::string lock_clause =
      lock && dialect == Database::Dialect::postgres ? " FOR UPDATE" : "";
  const SqlRows rows =
      s.query(std::string("SELECT ") + kSlideColumns + " FROM slides WHERE id = $1" + lock_clause,
              {SqlValue::text(id)});
  if (rows.empty() || !by.may_see_site(text_of(rows[0], 2)))
    throw StoreError(404, "no slide '" + printable(id, 64) + "'");
  return slide_of(rows[0]);
}

bool is_signed(const Slide& slide) { return slide.status == "signed"; }

// A slide's fields with their cells, inside the caller's transaction.
std::vector<StoredField> read_fields(SqlSession& s, const std::string& slide_id) {
  std::vector<StoredField> fields;
  const SqlRows rows = s.query(
      "SELECT id, seq, filename, image_format, width, height, quality_verdict, result, "
      "model_id, created_at, (SELECT COUNT(*) FROM field_images i WHERE i.field_id = fields.id) "
      "FROM fields WHERE slide_id = $1 ORDER BY seq",
      {SqlValue::text(slide_id)});
  for (const auto& r : rows) {
    StoredField f;
    f.id = text_of(r, 0);
    f.slide_id = slide_id;
    f.seq = int(int_of(r, 1));
    f.filename = text_of(r, 2);
    f.image_format = text_of(r, 3);
    f.width = int(int_of(r, 4));
    f.height = int(int_of(r, 5));
    f.quality_verdict = text_of(r, 6);
    f.result = json::parse(text_of(r, 7));
    f.model_id = text_of(r, 8);
    f.created_at = text_of(r, 9);
    f.image_kept = int_of(r, 10) > 0;
    for (const auto& c : s.query(
             std::string("SELECT ") + kCellColumns + " FROM cells WHERE field_id = $1 ORDER BY seq",
             {SqlValue::text(f.id)}))
      f.cells.push_back(cell_of(c));
    fields.push_back(std::move(f));
  }
  return fields;
}

}  // namespace

Slide SlideStore::create_slide(const SlideInfo& info, const User& by, const std::string& key) {
  if (!by.may_see_site(info.site))
    throw StoreError(403, by.name + " may not create slides for site '" + info.site + "'");
  // A retried creation (same key) is the slide made the first time; the key is scoped to whoever
  // sent it.
  const std::string scoped_key = key.empty() ? "" : by.name + "/" + key;
  auto earlier = [&]() -> std::optional<Slide> {
    std::optional<Slide> found;
    if (scoped_key.empty()) return found;
    db_->read([&](SqlSession& s) {
      const SqlRows rows =
          s.query("SELECT id FROM slides WHERE idempotency_key = $1", {SqlValue::text(scoped_key)});
      if (!rows.empty()) found = find_slide(s, text_of(rows[0], 0), by, false, db_->dialect());
    });
    return found;
  };
  if (auto found = earlier()) return *found;
  Slide slide;
  slide.id = "s" + random_hex(8);
  slide.info = info;
  slide.status = "screened";
  slide.created_at = now_iso8601();
  slide.created_by = by.name;
  try {
    db_->transaction([&](SqlSession& s) {
      s.query(
          "INSERT INTO slides (id, sample_id, site, operator_name, collected_on, stain, notes, "
          "rbc_per_ul, status, created_at, created_by, idempotency_key) VALUES ($1, $2, $3, $4, "
          "$5, $6, $7, $8, $9, $10, $11, $12)",
          {SqlValue::text(slide.id), SqlValue::text(info.sample_id), SqlValue::text(info.site),
           SqlValue::text(info.operator_name), SqlValue::text(info.collected_on),
           SqlValue::text(info.stain), SqlValue::text(info.notes),
           info.rbc_per_ul ? SqlValue::real(*info.rbc_per_ul) : SqlValue{},
           SqlValue::text(slide.status), SqlValue::text(slide.created_at), SqlValue::text(by.name),
           scoped_key.empty() ? SqlValue{} : SqlValue::text(scoped_key)});
      append_audit(s, slide.id, "", by.name, "create", nullptr, info.to_json(), "");
    });
  } catch (const SqlConstraintError&) {
    if (auto found = earlier()) return *found;  // a concurrent retry won
    throw;
  }
  return slide;
}

Slide SlideStore::slide(const std::string& id, const User& by) {
  Slide slide;
  db_->read([&](SqlSession& s) { slide = find_slide(s, id, by, false, db_->dialect()); });
  return slide;
}

std::vector<Slide> SlideStore::list_slides(const SlideFilter& filter, const User& by,
                                           size_t* total) {
  std::string where = " WHERE 1 = 1";
  SqlParams params;
  auto add = [&](const std::string& clause, const std::string& value) {
    params.push_back(SqlValue::text(value));
    std::string c = clause;
    c.replace(c.find('?'), 1, "$" + std::to_string(params.size()));
    where += " AND " + c;
  };
  if (!filter.status.empty()) add("status = ?", filter.status);
  if (!filter.site.empty()) add("site = ?", filter.site);
  if (!filter.from.empty()) add("created_at >= ?", filter.from);
  if (!filter.to.empty()) add("created_at <= ?", filter.to + "T23:59:59Z");
  if (!by.sites.empty()) {
    std::string in;
    for (const auto& site : by.sites) {
      params.push_back(SqlValue::text(site));
      in += (in.empty() ? "$" : ", $") + std::to_string(params.size());
    }
    where += " AND site IN (" + in + ")";
  }
  std::vector<Slide> slides;
  db_->read([&](SqlSession& s) {
    if (total)
      *total = size_t(int_of(s.query("SELECT COUNT(*) FROM slides" + where, params).at(0), 0));
    const std::string page = " ORDER BY created_at DESC, id LIMIT " +
                             std::to_string(std::min<size_t>(filter.limit, 500)) + " OFFSET " +
                             std::to_string(filter.offset);
    for (const auto& row :
         s.query(std::string("SELECT ") + kSlideColumns + " FROM slides" + where + page, params))
      slides.push_back(slide_of(row));
  });
  return slides;
}

std::vector<StoredField> SlideStore::fields(const std::string& slide_id, const User& by) {
  std::vector<StoredField> fields;
  db_->read([&](SqlSession& s) {
    find_slide(s, slide_id, by, false, db_->dialect());
    fields = read_fields(s, slide_id);
  });
  return fields;
}

std::optional<std::string> SlideStore::field_for_key(const std::string& slide_id,
                                                     const std::string& key,
                                                     const std::string& image) {
  std::optional<std::string> id;
  if (key.empty()) return id;
  db_->read([&](SqlSession& s) {
    const SqlRows rows =
        s.query("SELECT id, image_digest FROM fields WHERE slide_id = $1 AND idempotency_key = $2",
                {SqlValue::text(slide_id), SqlValue::text(key)});
    if (rows.empty()) return;
    if (text_of(rows[0], 1) != digest_hex(image))
      throw StoreError(422, "Idempotency-Key '" + printable(key, 64) +
                                "' was used for another image on this slide: use a new key");
    id = text_of(rows[0], 0);
  });
  return id;
}

std::string SlideStore::add_field(const std::string& slide_id, const FieldInput& field,
                                  const std::string& key, const User& by) {
  const std::string field_id = "f" + random_hex(8);
  try {
    db_->transaction([&](SqlSession& s) {
      const Slide slide = find_slide(s, slide_id, by, true, db_->dialect());
      if (is_signed(slide) || slide.status == "amended")
        throw StoreError(409, "slide " + slide_id + " is signed: no fields can be added");
      const int seq =
          int(int_of(s.query("SELECT COALESCE(MAX(seq), 0) FROM fields WHERE slide_id = $1",
                             {SqlValue::text(slide_id)})
                         .at(0),
                     0)) +
          1;
      s.query(
          "INSERT INTO fields (id, slide_id, seq, filename, image_format, width, height, "
          "quality_verdict, result, model_id, idempotency_key, created_at, created_by, "
          "image_digest) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
          {SqlValue::text(field_id), SqlValue::text(slide_id), SqlValue::number(seq),
           SqlValue::text(field.filename), SqlValue::text(field.image_format),
           SqlValue::number(field.width), SqlValue::number(field.height),
           SqlValue::text(field.quality_verdict), SqlValue::text(field.result.dump()),
           SqlValue::text(field.model_id), key.empty() ? SqlValue{} : SqlValue::text(key),
           SqlValue::text(now_iso8601()), SqlValue::text(by.name),
           SqlValue::text(digest_hex(field.image))});
      s.query("INSERT INTO field_images (field_id, data) VALUES ($1, $2)",
              {SqlValue::text(field_id), SqlValue::blob(field.image)});
      // Many rows per statement: a field's few hundred cells in a few round trips.
      // 80 x 11 parameters: under SQLite's old limit of 999 per statement.
      constexpr size_t kRowsPerInsert = 80, kColumns = 11;
      for (size_t first = 0; first < field.cells.size(); first += kRowsPerInsert) {
        std::string sql =
            "INSERT INTO cells (id, field_id, seq, x, y, w, h, probability, label, decision, "
            "stage) VALUES ";
        SqlParams params;
        const size_t last = std::min(field.cells.size(), first + kRowsPerInsert);
        for (size_t i = first; i < last; ++i) {
          const StoredCell& c = field.cells[i];
          sql += i == first ? "(" : ", (";
          for (size_t k = 0; k < kColumns; ++k)
            sql += (k ? ", $" : "$") + std::to_string(params.size() + k + 1);
          sql += ")";
          params.insert(
              params.end(),
              {SqlValue::text(field_id + "c" + std::to_string(i + 1)), SqlValue::text(field_id),
               SqlValue::number(long(i + 1)), SqlValue::number(c.x), SqlValue::number(c.y),
               SqlValue::number(c.width), SqlValue::number(c.height), SqlValue::real(c.probability),
               SqlValue::text(c.label), SqlValue::text(c.decision), SqlValue::text(c.stage)});
        }
        s.query(sql, params);
      }
      append_audit(s, slide_id, "", by.name, "add_field", nullptr,
                   {{"field_id", field_id},
                    {"file", field.filename},
                    {"seq", seq},
                    {"cells", field.cells.size()},
                    {"quality", field.quality_verdict}},
                   field.model_id);
    });
  } catch (const SqlConstraintError&) {
    // The same Idempotency-Key stored by a concurrent request: that one is the answer.
    if (auto existing = field_for_key(slide_id, key, field.image)) return *existing;
    throw;
  }
  return field_id;
}

std::pair<std::string, std::string> SlideStore::field_image(const std::string& field_id,
                                                            const User& by) {
  std::pair<std::string, std::string> image;
  db_->read([&](SqlSession& s) {
    const SqlRows rows = s.query(
        "SELECT f.image_format, s.site, i.data FROM fields f JOIN slides s ON s.id = f.slide_id "
        "LEFT JOIN field_images i ON i.field_id = f.id WHERE f.id = $1",
        {SqlValue::text(field_id)});
    if (rows.empty() || !by.may_see_site(text_of(rows[0], 1)))
      throw StoreError(404, "no field '" + printable(field_id, 64) + "'");
    if (!rows[0][2]) throw StoreError(410, "the image of field " + field_id + " was purged");
    image = {text_of(rows[0], 0), *rows[0][2]};
  });
  return image;
}

std::pair<StoredCell, std::string> SlideStore::cell(const std::string& cell_id, const User& by) {
  std::pair<StoredCell, std::string> found;
  db_->read([&](SqlSession& s) {
    const SqlRows rows = s.query(std::string("SELECT f.id, sl.site, ") + kCellColumns +
                                     " FROM cells JOIN fields f ON f.id = cells.field_id "
                                     "JOIN slides sl ON sl.id = f.slide_id WHERE cells.id = $1",
                                 {SqlValue::text(cell_id)});
    if (rows.empty() || !by.may_see_site(text_of(rows[0], 1)))
      throw StoreError(404, "no cell '" + printable(cell_id, 64) + "'");
    found = {cell_of(rows[0], 2), text_of(rows[0], 0)};
  });
  return found;
}

StoredCell SlideStore::review_cell(const std::string& cell_id, const std::string& decision,
                                   const std::string& stage, const std::string& amendment_reason,
                                   const User& by) {
  if (!by.may_review())
    throw StoreError(403, by.name + " is a " + by.role + ": only a reviewer may review cells");
  if (decision != "Parasitized" && decision != "Uninfected" && decision != "Not a cell")
    throw StoreError(400, "'decision' must be Parasitized, Uninfected or Not a cell");
  if (!stage.empty()) {
    if (decision != "Parasitized") throw StoreError(400, "only a Parasitized cell has a stage");
    if (std::find(kStageNames.begin(), kStageNames.end(), stage) == kStageNames.end())
      throw StoreError(400, "'stage' must be ring, trophozoite, schizont or gametocyte");
  }
  if (amendment_reason.size() > 500)
    throw StoreError(400, "'reason' is longer than 500 characters");
  StoredCell cell;
  db_->transaction([&](SqlSession& s) {
    const SqlRows owner = s.query(
        "SELECT f.slide_id FROM cells JOIN fields f ON f.id = cells.field_id "
        "WHERE cells.id = $1",
        {SqlValue::text(cell_id)});
    if (owner.empty()) throw StoreError(404, "no cell '" + printable(cell_id, 64) + "'");
    const std::string slide_id = text_of(owner[0], 0);
    // The slide is locked first, then the cell read: two reviewers of one cell are serialised
    // and each audit event's "before" is what the other left.
    const Slide slide = find_slide(s, slide_id, by, true, db_->dialect());
    const SqlRows rows = s.query(std::string("SELECT f.model_id, ") + kCellColumns +
                                     " FROM cells JOIN fields f ON f.id = cells.field_id "
                                     "WHERE cells.id = $1",
                                 {SqlValue::text(cell_id)});
    const std::string model_id = text_of(rows.at(0), 0);
    cell = cell_of(rows[0], 1);
    const bool amendment = is_signed(slide) || slide.status == "amended";
    if (amendment && amendment_reason.empty())
      throw StoreError(
          409, "slide " + slide_id + " is signed: a change is an amendment and needs a 'reason'");
    const json before = cell.to_json();
    const std::string at = now_iso8601();
    s.query(
        "UPDATE cells SET review_decision = $1, review_stage = $2, reviewed_by = $3, "
        "reviewed_at = $4 WHERE id = $5",
        {SqlValue::text(decision), SqlValue::text(stage), SqlValue::text(by.name),
         SqlValue::text(at), SqlValue::text(cell_id)});
    cell.review = CellReview{decision, stage, by.name, at};
    json after = cell.to_json();
    if (amendment) after["reason"] = amendment_reason;
    s.query("UPDATE slides SET status = $1, amendments = amendments + $2 WHERE id = $3",
            {SqlValue::text(amendment ? "amended" : "in_review"),
             SqlValue::number(amendment ? 1 : 0), SqlValue::text(slide_id)});
    append_audit(s, slide_id, cell_id, by.name, amendment ? "amend" : "review", before, after,
                 model_id);
  });
  return cell;
}

Slide SlideStore::sign_slide(const std::string& slide_id, const User& by) {
  if (!by.may_review())
    throw StoreError(403, by.name + " is a " + by.role + ": only a reviewer may sign");
  Slide slide;
  db_->transaction([&](SqlSession& s) {
    slide = find_slide(s, slide_id, by, true, db_->dialect());
    if (is_signed(slide)) throw StoreError(409, "slide " + slide_id + " is already signed");
    // Checked under the slide's lock, so no field can arrive between the check and the signature.
    const json summary = slide_summary(slide, read_fields(s, slide_id));
    if (summary["fields_used"].get<size_t>() == 0)
      throw StoreError(409, "slide " + slide_id + " has no usable field to sign");
    const size_t pending = summary["reviewed"]["pending"];
    if (pending > 0)
      throw StoreError(409, std::to_string(pending) +
                                " flagged cells are not reviewed yet: review them before signing");
    const json before = {{"status", slide.status}};
    slide.status = "signed";
    slide.signed_at = now_iso8601();
    slide.signed_by = by.name;
    s.query("UPDATE slides SET status = $1, signed_at = $2, signed_by = $3 WHERE id = $4",
            {SqlValue::text(slide.status), SqlValue::text(slide.signed_at), SqlValue::text(by.name),
             SqlValue::text(slide_id)});
    append_audit(s, slide_id, "", by.name, "sign", before, {{"status", slide.status}}, "");
  });
  return slide;
}

namespace {

std::vector<AuditEvent> audit_events(const SqlRows& rows) {
  std::vector<AuditEvent> events;
  for (const auto& r : rows) {
    AuditEvent e;
    e.seq = int_of(r, 0);
    e.slide_id = text_of(r, 1);
    e.cell_id = text_of(r, 2);
    e.at = text_of(r, 3);
    e.user = text_of(r, 4);
    e.action = text_of(r, 5);
    if (r[6]) e.before = json::parse(*r[6]);
    if (r[7]) e.after = json::parse(*r[7]);
    e.model_id = text_of(r, 8);
    events.push_back(std::move(e));
  }
  return events;
}

const char* kAuditColumns =
    "seq, slide_id, cell_id, at, user_name, action, before_state, after_state, model_id";

}  // namespace

std::vector<AuditEvent> SlideStore::audit(const std::string& slide_id, const User& by) {
  std::vector<AuditEvent> events;
  db_->read([&](SqlSession& s) {
    find_slide(s, slide_id, by, false, db_->dialect());
    events = audit_events(s.query(
        std::string("SELECT ") + kAuditColumns + " FROM audit WHERE slide_id = $1 ORDER BY seq",
        {SqlValue::text(slide_id)}));
  });
  return events;
}

std::vector<AuditEvent> SlideStore::admin_audit() {
  std::vector<AuditEvent> events;
  db_->read([&](SqlSession& s) {
    events = audit_events(s.query(std::string("SELECT ") + kAuditColumns +
                                  " FROM audit WHERE slide_id IS NULL ORDER BY seq"));
  });
  return events;
}

size_t SlideStore::purge_images_older_than(double days, const std::string& actor) {
  if (!(days >= 0)) throw StoreError(400, "--older-than must be a number of days, 0 or more");
  const std::string stamp = iso8601_from_now(-days);
  size_t purged = 0;
  db_->transaction([&](SqlSession& s) {
    const SqlRows rows = s.query(
        "SELECT i.field_id FROM field_images i JOIN fields f ON f.id = i.field_id JOIN slides sl "
        "ON sl.id = f.slide_id WHERE f.created_at <= $1 AND sl.status = 'signed'",
        {SqlValue::text(stamp)});
    purged = rows.size();
    append_audit(s, "", "", actor, "purge", nullptr,
                 {{"older_than_days", days}, {"images", purged}}, "");
    s.query(
        "DELETE FROM field_images WHERE field_id IN (SELECT f.id FROM fields f JOIN slides sl ON "
        "sl.id = f.slide_id WHERE f.created_at <= $1 AND sl.status = 'signed')",
        {SqlValue::text(stamp)});
  });
  return purged;
}

namespace {

// Empty (never) for 0 days; refuses what is not a positive number of days up to ten years.
std::string expiry_after(double valid_days) {
  if (valid_days == 0) return "";
  if (!(valid_days >= 1 && valid_days <= 3650))
    throw StoreError(400, "a token is valid for 1 to 3650 days, or 0 for no expiry");
  return iso8601_from_now(valid_days);
}

}  // namespace

std::string SlideStore::add_user(const std::string& name, const std::string& role,
                                 const std::vector<std::string>& sites, const std::string& actor,
                                 double valid_days) {
  // Names go into URLs (/api/v1/users/{name}/token) and the comma-joined audit: a safe alphabet.
  if (name.empty() || name.size() > 64 ||
      name.find_first_not_of(
          "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._@-") !=
          std::string::npos)
    throw StoreError(400, "a user name is 1-64 letters, digits, '.', '_', '@' or '-'");
  for (const char* reserved : {"local", "api-key", "cli"})
    if (name == reserved)
      throw StoreError(400, "'" + name + "' is reserved: the audit trail uses it for " +
                                (name == "cli" ? "the command line" : "the server itself"));
  if (role != kRoleTechnician && role != kRoleReviewer && role != kRoleAdmin)
    throw StoreError(400, "the role must be technician, reviewer or admin");
  const std::string joined = joined_sites(sites), expires_at = expiry_after(valid_days);
  const std::string id = random_hex(8), secret = random_hex(32),
                    salt = random_hex(crypto_generichash_KEYBYTES);
  try {
    db_->transaction([&](SqlSession& s) {
      s.query(
          "INSERT INTO users (id, name, role, sites, salt, token_hash, created_at, expires_at) "
          "VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
          {SqlValue::text(id), SqlValue::text(name), SqlValue::text(role), SqlValue::text(joined),
           SqlValue::text(salt), SqlValue::text(token_hash(secret, salt)),
           SqlValue::text(now_iso8601()), text_or_null(expires_at)});
      append_audit(s, "", "", actor, "user_add", nullptr,
                   {{"name", name},
                    {"role", role},
                    {"sites", sites},
                    {"expires_at", expires_at.empty() ? json(nullptr) : json(expires_at)}},
                   "");
    });
  } catch (const SqlConstraintError&) {
    throw StoreError(409, "a user named '" + name + "' exists already");
  }
  return "mal_" + id + "_" + secret;
}

void SlideStore::set_sites(const std::string& name, const std::vector<std::string>& sites,
                           const std::string& actor) {
  const std::string joined = joined_sites(sites);
  db_->transaction([&](SqlSession& s) {
    if (s.query("SELECT id FROM users WHERE name = $1", {SqlValue::text(name)}).empty())
      throw StoreError(404, "no user named '" + printable(name, 64) + "'");
    const json before = {
        {"sites",
         split_sites(text_of(
             s.query("SELECT sites FROM users WHERE name = $1", {SqlValue::text(name)}).at(0),
             0))}};
    s.query("UPDATE users SET sites = $1 WHERE name = $2",
            {SqlValue::text(joined), SqlValue::text(name)});
    append_audit(s, "", "", actor, "user_sites", before, {{"name", name}, {"sites", sites}}, "");
  });
}

void SlideStore::remove_user(const std::string& name, const std::string& actor) {
  db_->transaction([&](SqlSession& s) {
    if (s.query("SELECT id FROM users WHERE name = $1", {SqlValue::text(name)}).empty())
      throw StoreError(404, "no user named '" + printable(name, 64) + "'");
    s.query("DELETE FROM users WHERE name = $1", {SqlValue::text(name)});
    append_audit(s, "", "", actor, "user_remove", {{"name", name}}, nullptr, "");
  });
}

std::string SlideStore::rotate_token(const std::string& name, const std::string& actor,
                                     double valid_days) {
  const std::string expires_at = expiry_after(valid_days), secret = random_hex(32),
                    salt = random_hex(crypto_generichash_KEYBYTES);
  std::string id;
  db_->transaction([&](SqlSession& s) {
    const SqlRows rows = s.query("SELECT id FROM users WHERE name = $1", {SqlValue::text(name)});
    if (rows.empty()) throw StoreError(404, "no user named '" + printable(name, 64) + "'");
    id = text_of(rows[0], 0);
    s.query("UPDATE users SET salt = $1, token_hash = $2, expires_at = $3 WHERE id = $4",
            {SqlValue::text(salt), SqlValue::text(token_hash(secret, salt)),
             text_or_null(expires_at), SqlValue::text(id)});
    append_audit(
        s, "", "", actor, "user_token", nullptr,
        {{"name", name}, {"expires_at", expires_at.empty() ? json(nullptr) : json(expires_at)}},
        "");
  });
  return "mal_" + id + "_" + secret;
}

std::vector<User> SlideStore::users() {
  std::vector<User> users;
  db_->read([&](SqlSession& s) {
    for (const auto& r :
         s.query("SELECT id, name, role, sites, created_at, expires_at FROM users ORDER BY name"))
      users.push_back({text_of(r, 0), text_of(r, 1), text_of(r, 2), split_sites(text_of(r, 3)),
                       text_of(r, 4), text_of(r, 5)});
  });
  return users;
}

size_t SlideStore::user_count() {
  size_t n = 0;
  db_->read(
      [&](SqlSession& s) { n = size_t(int_of(s.query("SELECT COUNT(*) FROM users").at(0), 0)); });
  return n;
}

std::optional<User> SlideStore::authenticate(const std::string& token) {
  // mal_<16 hex id>_<64 hex secret>
  if (token.size() != 4 + 16 + 1 + 64 || token.rfind("mal_", 0) != 0 || token[20] != '_')
    return std::nullopt;
  const std::string id = token.substr(4, 16), secret = token.substr(21);
  std::optional<User> user;
  db_->read([&](SqlSession& s) {
    const SqlRows rows = s.query(
        "SELECT id, name, role, sites, created_at, expires_at, salt, token_hash FROM users "
        "WHERE id = $1",
        {SqlValue::text(id)});
    if (rows.empty()) return;
    const std::string expected = text_of(rows[0], 7),
                      actual = token_hash(secret, text_of(rows[0], 6));
    if (expected.size() == actual.size() &&
        sodium_memcmp(expected.data(), actual.data(), expected.size()) == 0)
      user = User{text_of(rows[0], 0), text_of(rows[0], 1),
                  text_of(rows[0], 2), split_sites(text_of(rows[0], 3)),
                  text_of(rows[0], 4), text_of(rows[0], 5)};
  });
  // Only the holder of the real token learns that it expired.
  if (user && !user->expires_at.empty() && user->expires_at <= now_iso8601())
    throw StoreError(401, "this token expired at " + user->expires_at +
                              ": an admin issues a new one (malaria users rotate " + user->name +
                              ")");
  return user;
}

}  // namespace malaria
