// The embedded store: one SQLite connection per process in WAL mode, transactions serialised by a
// mutex (writes are milliseconds; the screening before them is seconds). Other processes (the
// CLI reading while the server writes) wait up to the busy timeout.
#include <sqlite3.h>

#include <cstdio>
#include <mutex>

#include "store/database.h"
#include "util/files.h"

namespace malaria {

namespace {

class SqliteSession : public SqlSession {
 public:
  explicit SqliteSession(sqlite3* db) : db_(db) {}

  SqlRows query(const std::string& sql, const SqlParams& params = {}) override {
    sqlite3_stmt* raw = nullptr;
    check(sqlite3_prepare_v2(db_, sql.c_str(), int(sql.size()), &raw, nullptr), sql);
    std::unique_ptr<sqlite3_stmt, int (*)(sqlite3_stmt*)> stmt(raw, sqlite3_finalize);
    for (size_t i = 0; i < params.size(); ++i) {
      const std::string name = "$" + std::to_string(i + 1);
      const int index = sqlite3_bind_parameter_index(raw, name.c_str());
      if (index == 0) continue;  // a parameter the statement does not use
      const SqlValue& v = params[i];
      int rc = SQLITE_OK;
      if (v.kind == SqlValue::Kind::null)
        rc = sqlite3_bind_null(raw, index);
      else if (v.kind == SqlValue::Kind::text)
        rc = sqlite3_bind_text64(raw, index, v.data.data(), v.data.size(), SQLITE_TRANSIENT,
                                 SQLITE_UTF8);
      else
        rc = sqlite3_bind_blob64(raw, index, v.data.data(), v.data.size(), SQLITE_TRANSIENT);
      check(rc, sql);
    }
    SqlRows rows;
    while (true) {
      const int rc = sqlite3_step(raw);
      if (rc == SQLITE_DONE) break;
      if (rc != SQLITE_ROW) check(rc, sql);
      SqlRow row(sqlite3_column_count(raw));
      for (int c = 0; c < int(row.size()); ++c) {
        if (sqlite3_column_type(raw, c) == SQLITE_NULL) continue;
        const void* data = sqlite3_column_blob(raw, c);
        const int bytes = sqlite3_column_bytes(raw, c);
        row[c] = data ? std::string(static_cast<const char*>(data), size_t(bytes)) : std::string();
      }
      rows.push_back(std::move(row));
    }
    return rows;
  }

  void check(int rc, const std::string& sql) const {
    if (rc == SQLITE_OK || rc == SQLITE_ROW || rc == SQLITE_DONE) return;
    const std::string message =
        std::string(sqlite3_errmsg(db_)) + " (in: " + sql.substr(0, 80) + ")";
    if ((rc & 0xff) == SQLITE_CONSTRAINT) throw SqlConstraintError(message);
    if ((rc & 0xff) == SQLITE_BUSY || (rc & 0xff) == SQLITE_LOCKED)
      throw SqlUnavailable("the record database is busy: " + message);
    throw std::runtime_error("record database: " + message);
  }

 private:
  sqlite3* db_;
};

class SqliteDatabase : public Database {
 public:
  explicit SqliteDatabase(const std::string& path) : path_(path) {
    const int rc = sqlite3_open_v2(
        path.c_str(), &db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX,
        nullptr);
    if (rc != SQLITE_OK) {
      const std::string message = db_ ? sqlite3_errmsg(db_) : "out of memory";
      sqlite3_close(db_);
      throw SqlUnavailable("cannot open the record database " + path + ": " + message);
    }
    sqlite3_busy_timeout(db_, 10000);
    SqliteSession session(db_);
    // WAL: a reader (the CLI, a read transaction) and the writer do not block each other; FULL: a
    // commit survives power loss.
    session.query("PRAGMA journal_mode=WAL");
    session.query("PRAGMA synchronous=FULL");
    session.query("PRAGMA foreign_keys=ON");
  }
  ~SqliteDatabase() override { sqlite3_close(db_); }

  Dialect dialect() const override { return Dialect::sqlite; }
  std::string describe() const override { return "sqlite:" + path_; }

  void transaction(const std::function<void(SqlSession&)>& work) override {
    // IMMEDIATE takes the write lock up front: two processes never deadlock upgrading a read.
    run("BEGIN IMMEDIATE", work);
  }
  void read(const std::function<void(SqlSession&)>& work) override { run("BEGIN", work); }

 private:
  void run(const char* begin, const std::function<void(SqlSession&)>& work) {
    std::lock_guard lock(mutex_);
    SqliteSession session(db_);
    session.query(begin);
    try {
      work(session);
      session.query("COMMIT");
    } catch (...) {
      sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
      throw;
    }
  }

  std::string path_;
  sqlite3* db_ = nullptr;
  std::mutex mutex_;
};

}  // namespace

std::unique_ptr<Database> open_sqlite(const std::string& path) {
  return std::make_unique<SqliteDatabase>(path);
}

}  // namespace malaria
