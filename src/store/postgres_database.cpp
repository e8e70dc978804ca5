// PostgreSQL through libpqxx: a small pool of connections, one per transaction in flight, so
// several replicas and their request threads share one database. A broken connection is dropped
// and the request fails with SqlUnavailable (the client retries; its Idempotency-Key keeps the
// retry from storing twice).
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <pqxx/pqxx>
#include <regex>

#include "store/database.h"

namespace pqxx {
template <>
struct string_traits<malaria::SqlValue> {
  static constexpr const char* name() noexcept { return "malaria::SqlValue"; }
  static constexpr bool has_null() noexcept { return true; }
  static bool is_null(const malaria::SqlValue& v) {
    return v.kind == malaria::SqlValue::Kind::null;
  }
  static malaria::SqlValue null() { return {}; }
  static void from_string(const char text[], malaria::SqlValue& v) {
    v = malaria::SqlValue::text(text);
  }
  static std::string to_string(const malaria::SqlValue& v) { return v.data; }
};
}  // namespace pqxx

namespace malaria {

namespace {

constexpr size_t kMaxConnections = 8;
constexpr std::chrono::seconds kAcquireTimeout{10};
constexpr unsigned kByteaOid = 17;

// bytea travels as text in PostgreSQL's hex format: \x0a1b...
std::string bytea_hex(const std::string& bytes) {
  static const char* digits = "0123456789abcdef";
  std::string out = "\\x";
  out.reserve(2 + 2 * bytes.size());
  for (unsigned char c : bytes) {
    out.push_back(digits[c >> 4]);
    out.push_back(digits[c & 15]);
  }
  return out;
}

class PostgresSession : public SqlSession {
 public:
  explicit PostgresSession(pqxx::work& txn) : txn_(txn) {}

  SqlRows query(const std::string& sql, const SqlParams& params = {}) override {
    SqlParams sent = params;
    for (auto& v : sent)
      if (v.kind == SqlValue::Kind::blob) v = SqlValue::text(bytea_hex(v.data));
    const pqxx::result result = txn_.exec_params(sql, pqxx::prepare::make_dynamic_params(sent));
    SqlRows rows;
    rows.reserve(result.size());
    for (const auto& r : result) {
      SqlRow row(r.size());
      for (pqxx::row::size_type c = 0; c < r.size(); ++c) {
        if (r[c].is_null()) continue;
        if (r[c].type() == kByteaOid)
          row[c] = pqxx::binarystring(r[c]).str();
        else
          row[c] = std::string(r[c].c_str(), r[c].size());
      }
      rows.push_back(std::move(row));
    }
    return rows;
  }

 private:
  pqxx::work& txn_;
};

class PostgresDatabase : public Database {
 public:
  explicit PostgresDatabase(std::string uri) : uri_(std::move(uri)) {
    release(acquire());  // fail now, not at the first request, when it cannot connect
  }

  Dialect dialect() const override { return Dialect::postgres; }
  // The URI without its password (user:PASSWORD@ or ?password=...).
  std::string describe() const override {
    const std::string hidden =
        std::regex_replace(uri_, std::regex("(://[^:/@]*):[^@]*@"), "$1:***@");
    return std::regex_replace(hidden, std::regex("password=[^&]*"), "password=***");
  }

  void transaction(const std::function<void(SqlSession&)>& work) override {
    std::unique_ptr<pqxx::connection> connection = acquire();
    try {
      pqxx::work txn(*connection);
      PostgresSession session(txn);
      work(session);
      txn.commit();
    } catch (const pqxx::integrity_constraint_violation& e) {
      release(std::move(connection));
      throw SqlConstraintError(e.what());
    } catch (const pqxx::transaction_rollback& e) {  // serialization failure, deadlock
      release(std::move(connection));
      throw SqlUnavailable(std::string("the record database asked for a retry: ") + e.what());
    } catch (const pqxx::sql_error& e) {
      release(std::move(connection));
      throw std::runtime_error(std::string("record database: ") + e.what());
    } catch (const pqxx::failure& e) {  // broken connection, commit in doubt: not reused
      forget();
      throw SqlUnavailable(std::string("the record database is unreachable: ") + e.what());
    } catch (...) {
      release(std::move(connection));
      throw;
    }
    release(std::move(connection));
  }

 private:
  // Opens a connection in a slot already counted in open_ (given back when it fails).
  std::unique_ptr<pqxx::connection> connect() {
    try {
      return std::make_unique<pqxx::connection>(uri_);
    } catch (const std::exception& e) {
      forget();
      throw SqlUnavailable("cannot connect to the record database " + describe() + ": " + e.what());
    }
  }

  // An idle connection that is still open, or a new one in a free slot; a database that holds
  // every connection for longer than kAcquireTimeout is unavailable (503), not a hang.
  std::unique_ptr<pqxx::connection> acquire() {
    std::unique_lock lock(mutex_);
    if (!available_.wait_for(lock, kAcquireTimeout,
                             [&] { return !idle_.empty() || open_ < kMaxConnections; }))
      throw SqlUnavailable("the record database is busy: no connection free");
    while (!idle_.empty()) {
      auto c = std::move(idle_.back());
      idle_.pop_back();
      if (c->is_open()) return c;
      --open_;  // closed while idle (the server restarted): dropped
    }
    ++open_;  // the slot is ours before the (slow) connect, so bursts cannot overshoot
    lock.unlock();
    return connect();
  }

  void release(std::unique_ptr<pqxx::connection> c) {
    {
      std::lock_guard lock(mutex_);
      idle_.push_back(std::move(c));
    }
    available_.notify_one();
  }

  void forget() {
    {
      std::lock_guard lock(mutex_);
      --open_;
    }
    available_.notify_one();
  }

  std::string uri_;
  std::mutex mutex_;
  std::condition_variable available_;
  std::vector<std::unique_ptr<pqxx::connection>> idle_;
  size_t open_ = 0;
};

}  // namespace

std::unique_ptr<Database> open_postgres(const std::string& uri) {
  return std::make_unique<PostgresDatabase>(uri);
}

}  // namespace malaria
