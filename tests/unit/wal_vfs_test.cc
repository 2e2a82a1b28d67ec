// The WAL-batching VFS (core/src/wal_vfs.cc): a commit is on disk and visible to other
// connections when COMMIT returns, large and small, and survives the writer's kill -9.
#include "wal_vfs.h"

#include <signal.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>

#include "test_util.h"

namespace sidelog::testing {
namespace {

sqlite3* OpenDb(const std::string& path, const char* vfs) {
  sqlite3* db = nullptr;
  EXPECT_EQ(sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, vfs),
            SQLITE_OK);
  sqlite3_busy_timeout(db, 5000);
  return db;
}

void Exec(sqlite3* db, const std::string& sql) {
  char* err = nullptr;
  ASSERT_EQ(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err), SQLITE_OK)
      << (err ? err : "") << " in " << sql.substr(0, 80);
}

int64_t Scalar(sqlite3* db, const std::string& sql) {
  sqlite3_stmt* s = nullptr;
  EXPECT_EQ(sqlite3_prepare_v2(db, sql.c_str(), -1, &s, nullptr), SQLITE_OK) << sql;
  int64_t v = -1;
  if (sqlite3_step(s) == SQLITE_ROW) v = sqlite3_column_int64(s, 0);
  sqlite3_finalize(s);
  return v;
}

std::string Text(sqlite3* db, const std::string& sql) {
  sqlite3_stmt* s = nullptr;
  EXPECT_EQ(sqlite3_prepare_v2(db, sql.c_str(), -1, &s, nullptr), SQLITE_OK) << sql;
  std::string v;
  if (sqlite3_step(s) == SQLITE_ROW) {
    v = reinterpret_cast<const char*>(sqlite3_column_text(s, 0));
  }
  sqlite3_finalize(s);
  return v;
}

class WalBatchingVfs : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_NE(vfs_, nullptr); }
  const char* vfs_ = sqlite::WalBatchingVfs();
  TempDir dir_;
};

TEST_F(WalBatchingVfs, EveryCommitIsVisibleToAnotherConnectionWhenCommitReturns) {
  const std::string path = dir_.File("v.db");
  sqlite3* writer = OpenDb(path, vfs_);
  Exec(writer,
       "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA wal_autocheckpoint=50;"
       "CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT NOT NULL)");
  sqlite3* reader = OpenDb(path, nullptr);  // the default VFS, as the log's readers use
  const std::string big(5 << 20, 'x');      // larger than the VFS's buffer
  for (int i = 1; i <= 300; ++i) {
    const std::string v = i % 100 == 0 ? big : std::string(static_cast<size_t>(i * 37), 'a');
    Exec(writer,
         "BEGIN; INSERT INTO t (k, v) VALUES (" + std::to_string(i) + ", '" + v + "'); COMMIT;");
    ASSERT_EQ(Scalar(reader, "SELECT count(*) FROM t"), i) << "commit " << i;
    ASSERT_EQ(Scalar(reader, "SELECT length(v) FROM t WHERE k = " + std::to_string(i)),
              static_cast<int64_t>(v.size()));
  }
  // A rolled-back transaction leaves nothing behind.
  Exec(writer, "BEGIN; INSERT INTO t (k, v) VALUES (1000, 'no'); ROLLBACK;");
  EXPECT_EQ(Scalar(reader, "SELECT count(*) FROM t"), 300);
  sqlite3_close(reader);
  sqlite3_close(writer);

  sqlite3* again = OpenDb(path, nullptr);
  EXPECT_EQ(Text(again, "PRAGMA integrity_check"), "ok");
  EXPECT_EQ(Scalar(again, "SELECT count(*) FROM t"), 300);
  sqlite3_close(again);
}

TEST_F(WalBatchingVfs, AcknowledgedCommitsSurviveKillNine) {
  const std::string path = dir_.File("k.db");
  {
    sqlite3* db = OpenDb(path, nullptr);
    Exec(db, "PRAGMA journal_mode=WAL; CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT)");
    sqlite3_close(db);
  }
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    close(fds[0]);
    sqlite3* db = nullptr;
    if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE, vfs_) != SQLITE_OK) _exit(2);
    sqlite3_exec(db, "PRAGMA synchronous=NORMAL", nullptr, nullptr, nullptr);
    for (int64_t i = 1;; ++i) {
      const std::string sql = "INSERT INTO t (k, v) VALUES (" + std::to_string(i) + ", '" +
                              std::string(static_cast<size_t>(100 + i % 3000), 'z') + "')";
      if (sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr) != SQLITE_OK) _exit(3);
      if (write(fds[1], &i, sizeof i) != sizeof i) _exit(4);  // acknowledged
    }
  }
  close(fds[1]);
  int64_t acked = 0, n = 0;
  const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(400);
  while (std::chrono::steady_clock::now() < until && read(fds[0], &n, sizeof n) == sizeof n) {
    acked = n;
  }
  kill(child, SIGKILL);
  waitpid(child, nullptr, 0);
  while (read(fds[0], &n, sizeof n) == sizeof n) acked = n;  // acknowledged before the kill
  close(fds[0]);
  ASSERT_GT(acked, 0);

  sqlite3* db = OpenDb(path, nullptr);
  EXPECT_EQ(Text(db, "PRAGMA integrity_check"), "ok");
  EXPECT_GE(Scalar(db, "SELECT count(*) FROM t"), acked);
  EXPECT_EQ(Scalar(db, "SELECT max(k) FROM t"), Scalar(db, "SELECT count(*) FROM t"))
      << "no gap: the log holds a prefix of the commits";
  sqlite3_close(db);
}

}  // namespace
}  // namespace sidelog::testing
