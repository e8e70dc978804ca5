// SQL over the two databases the records can live in: SQLite (embedded, the default) and
// PostgreSQL (shared by several server replicas). One SQL text serves both: parameters are $1, $2,
// ... and values travel as text, null or blob. Torch-free.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace malaria {

struct SqlValue {
  enum class Kind { null, text, blob };
  Kind kind = Kind::null;
  std::string data;

  static SqlValue text(std::string s) { return {Kind::text, std::move(s)}; }
  static SqlValue blob(std::string bytes) { return {Kind::blob, std::move(bytes)}; }
  static SqlValue number(long long v) { return {Kind::text, std::to_string(v)}; }
  static SqlValue real(double v);
  static SqlValue optional(const std::optional<std::string>& s) {
    return s ? text(*s) : SqlValue{};
  }
};
using SqlParams = std::vector<SqlValue>;
// A result row: each column as text (blobs as their raw bytes), or nullopt for NULL.
using SqlRow = std::vector<std::optional<std::string>>;
using SqlRows = std::vector<SqlRow>;

// A unique or foreign-key constraint refused the write (e.g. an Idempotency-Key stored before).
struct SqlConstraintError : std::runtime_error {
  using std::runtime_error::runtime_error;
};
// The database cannot be reached or failed: the request may be retried.
struct SqlUnavailable : std::runtime_error {
  using std::runtime_error::runtime_error;
};

class SqlSession {
 public:
  virtual ~SqlSession() = default;
  virtual SqlRows query(const std::string& sql, const SqlParams& params = {}) = 0;
};

class Database {
 public:
  enum class Dialect { sqlite, postgres };
  virtual ~Database() = default;
  virtual Dialect dialect() const = 0;
  // Runs `work` in one transaction: committed when it returns, rolled back when it throws (the
  // exception is passed on). Safe to call from many threads.
  virtual void transaction(const std::function<void(SqlSession&)>& work) = 0;
  // A transaction that only reads: on SQLite it takes no write lock, so readers (the CLI,
  // authentication) never wait for a writer.
  virtual void read(const std::function<void(SqlSession&)>& work) { transaction(work); }
  // Where the records are, with any password removed: for logs.
  virtual std::string describe() const = 0;

  // "sqlite:PATH" (the file is created) or "postgresql://..." / "postgres://..." (libpq's URI).
  // Throws std::invalid_argument for another scheme, SqlUnavailable when it cannot connect.
  static std::unique_ptr<Database> open(const std::string& url);
};

std::unique_ptr<Database> open_sqlite(const std::string& path);
std::unique_ptr<Database> open_postgres(const std::string& uri);

}  // namespace malaria
