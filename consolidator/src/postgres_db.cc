#include "postgres_db.h"

#include <libpq-fe.h>

#include <atomic>
#include <cstdlib>

namespace sidelog::consolidator {
namespace {

// PostgreSQL type OIDs (pg_type.dat) that map to JSON other than a string.
constexpr Oid kBool = 16, kInt8 = 20, kInt2 = 21, kInt4 = 23, kOid = 26, kJson = 114, kFloat4 = 700,
              kFloat8 = 701, kNumeric = 1700, kJsonb = 3802;

struct ResultDeleter {
  void operator()(PGresult* r) const { PQclear(r); }
};
using PgResult = std::unique_ptr<PGresult, ResultDeleter>;

// Connection exceptions (08), rollbacks (40: serialization, deadlock), resources (53),
// operator intervention (57: shutdown) and system errors (58) pass: retry them.
bool TransientState(const std::string& sqlstate) {
  std::string cls = sqlstate.substr(0, 2);
  return cls == "08" || cls == "40" || cls == "53" || cls == "57" || cls == "58";
}

std::string Message(PGconn* conn, const PGresult* r) {
  std::string msg = r ? PQresultErrorMessage(r) : PQerrorMessage(conn);
  if (msg.empty()) msg = PQerrorMessage(conn);
  while (!msg.empty() && (msg.back() == '\n' || msg.back() == ' ')) msg.pop_back();
  return "PostgreSQL: " + msg;
}

// Ok for a successful result; otherwise Unavailable (transient or connection lost) or Rejected.
Status Check(PGconn* conn, const PGresult* r) {
  auto st = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
  if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK || st == PGRES_EMPTY_QUERY) {
    return Status::Ok();
  }
  const char* state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : nullptr;
  if (PQstatus(conn) != CONNECTION_OK || !state || TransientState(state)) {
    return Status::Unavailable(Message(conn, r));
  }
  return Status::Rejected(Message(conn, r));
}

Json Cell(const PGresult* r, int row, int col) {
  if (PQgetisnull(r, row, col)) return nullptr;
  const char* v = PQgetvalue(r, row, col);
  switch (PQftype(r, col)) {
    case kBool:
      return v[0] == 't';
    case kInt2:
    case kInt4:
    case kInt8:
    case kOid:
      return static_cast<int64_t>(std::strtoll(v, nullptr, 10));
    case kFloat4:
    case kFloat8:
    case kNumeric: {
      Json j = Json::parse(v, nullptr, false);  // NaN and Infinity are not JSON: text
      return j.is_number() ? j : Json(v);
    }
    case kJson:
    case kJsonb: {
      Json j = Json::parse(v, nullptr, false);
      return j.is_discarded() ? Json(v) : j;
    }
    default:
      return std::string(v, static_cast<size_t>(PQgetlength(r, row, col)));
  }
}

class PostgresStatement : public Statement {
 public:
  PostgresStatement(PGconn* conn, std::string name) : conn_(conn), name_(std::move(name)) {}

  Status Execute(const std::vector<SqlValue>& params) override {
    PgResult r = Run(params);
    return Check(conn_, r.get());
  }

  Result<Json> Query(const std::vector<SqlValue>& params, size_t max_rows) override {
    PgResult r = Run(params);
    if (auto st = Check(conn_, r.get()); !st.ok()) return st;
    const int rows = PQntuples(r.get()), cols = PQnfields(r.get());
    if (static_cast<size_t>(rows) > max_rows) {
      return Status::TooLarge("the query returned more than " + std::to_string(max_rows) +
                              " rows; narrow it or add a LIMIT");
    }
    Json out = Json::array();
    for (int i = 0; i < rows; ++i) {
      Json row = Json::object();
      for (int c = 0; c < cols; ++c) row[PQfname(r.get(), c)] = Cell(r.get(), i, c);
      out.push_back(std::move(row));
    }
    return out;
  }

 private:
  PgResult Run(const std::vector<SqlValue>& params) {
    std::vector<std::string> text(params.size());
    std::vector<const char*> values(params.size(), nullptr);
    for (size_t i = 0; i < params.size(); ++i) {
      if (std::holds_alternative<std::monostate>(params[i])) continue;
      text[i] = SqlValueText(params[i]);
      values[i] = text[i].c_str();
    }
    return PgResult(PQexecPrepared(conn_, name_.c_str(), static_cast<int>(params.size()),
                                   values.data(), nullptr, nullptr, 0));
  }

  PGconn* conn_;
  std::string name_;
};

class PostgresDb : public Db {
 public:
  PostgresDb(PGconn* conn, Access access) : conn_(conn), access_(access) {}
  ~PostgresDb() override { PQfinish(conn_); }

  Dialect dialect() const override { return Dialect::kPostgres; }

  Status ExecScript(const std::string& sql) override {
    PgResult r(PQexec(conn_, sql.c_str()));
    return Check(conn_, r.get());
  }

  Result<std::unique_ptr<Statement>> Prepare(const std::string& sql, size_t param_count) override {
    std::string name = "sidelog_" + std::to_string(++prepared_);
    PgResult r(PQprepare(conn_, name.c_str(), sql.c_str(), static_cast<int>(param_count), nullptr));
    if (auto st = Check(conn_, r.get()); !st.ok()) {
      if (st.code() == Status::Code::kUnavailable) return st;
      return Status::Invalid(st.message());
    }
    return std::unique_ptr<Statement>(std::make_unique<PostgresStatement>(conn_, name));
  }

  Status Begin() override {
    return ExecScript(access_ == Access::kReadOnly ? "BEGIN READ ONLY" : "BEGIN");
  }
  Status Commit() override {
    PgResult r(PQexec(conn_, "COMMIT"));
    if (auto st = Check(conn_, r.get()); !st.ok()) return st;
    // COMMIT of a failed transaction answers ROLLBACK instead of an error.
    if (std::string(PQcmdStatus(r.get())) == "ROLLBACK") {
      return Status::Rejected("PostgreSQL: the transaction was rolled back");
    }
    return Status::Ok();
  }
  void Rollback() override {
    if (PQtransactionStatus(conn_) != PQTRANS_IDLE) PgResult(PQexec(conn_, "ROLLBACK"));
  }
  bool broken() const override { return PQstatus(conn_) != CONNECTION_OK; }

 private:
  PGconn* conn_;
  Access access_;
  int prepared_ = 0;
};

void IgnoreNotice(void*, const char*) {}

}  // namespace

std::string QuotePostgresIdentifier(const std::string& name) {
  std::string out = "\"";
  for (char c : name) {
    out += c;
    if (c == '"') out += '"';
  }
  return out + "\"";
}

Result<std::unique_ptr<Db>> ConnectPostgres(const std::string& conninfo, const std::string& schema,
                                            Access access, bool create_schema) {
  PGconn* conn = PQconnectdb(conninfo.c_str());
  if (conn == nullptr) return Status::Unavailable("PostgreSQL: out of memory");
  auto db = std::make_unique<PostgresDb>(conn, access);  // owns conn from here on
  if (PQstatus(conn) != CONNECTION_OK) {
    return Status::Unavailable("cannot connect to PostgreSQL: " + Message(conn, nullptr));
  }
  // "NOTICE: relation already exists, skipping" and friends are not errors.
  PQsetNoticeProcessor(conn, IgnoreNotice, nullptr);
  std::string q = QuotePostgresIdentifier(schema);
  std::string setup;
  if (create_schema) setup += "CREATE SCHEMA IF NOT EXISTS " + q + ";";
  setup += "SET search_path TO " + q + ";";
  if (access == Access::kReadOnly) setup += "SET default_transaction_read_only = on;";
  if (auto st = db->ExecScript(setup); !st.ok()) {
    return Status::Unavailable("cannot set up the PostgreSQL connection (schema " + schema +
                               "): " + st.message());
  }
  return std::unique_ptr<Db>(std::move(db));
}

}  // namespace sidelog::consolidator
