// The SQLite Target (target.h): a file, its rebuild twin, and a lock file.
#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "sqlite_db.h"
#include "target.h"

namespace sidelog::consolidator {
namespace {

namespace fs = std::filesystem;

// An owned file descriptor.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(Fd&& o) noexcept : fd_(o.fd_) { o.fd_ = -1; }
  Fd& operator=(Fd&& o) noexcept {
    if (this != &o) {
      if (fd_ >= 0) close(fd_);
      fd_ = o.fd_;
      o.fd_ = -1;
    }
    return *this;
  }
  ~Fd() {
    if (fd_ >= 0) close(fd_);
  }
  int get() const { return fd_; }

 private:
  int fd_ = -1;
};

class SqliteTargetImpl : public Target {
 public:
  explicit SqliteTargetImpl(SqliteTarget config) : path_(std::move(config.path)) {}

  Dialect dialect() const override { return Dialect::kSqlite; }

  Status Lock() override {
    std::error_code ec;
    fs::path parent = fs::path(path_).parent_path();
    if (!parent.empty()) fs::create_directories(parent, ec);
    Fd fd(open((path_ + ".lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644));
    if (fd.get() < 0) {
      return Status::Unavailable("cannot open " + path_ + ".lock: " + std::strerror(errno));
    }
    if (flock(fd.get(), LOCK_EX | LOCK_NB) != 0) {
      return Status::Conflict("another consolidator process folds into " + path_ + " (it holds " +
                              path_ + ".lock)");
    }
    lock_ = std::move(fd);
    return Status::Ok();
  }

  Result<std::unique_ptr<Db>> OpenWriter(Slot slot) override {
    return OpenSqlite(PathOf(slot), Access::kReadWrite);
  }

  Result<std::unique_ptr<Db>> OpenReader() override { return OpenSqlite(path_, Access::kReadOnly); }

  Status ClearRebuild() override {
    std::string p = PathOf(Slot::kRebuild);
    for (const char* suffix : {"", "-wal", "-shm", "-journal"}) {
      std::error_code ec;
      fs::remove(p + suffix, ec);
      if (ec) return Status::Unavailable("cannot remove " + p + suffix + ": " + ec.message());
    }
    return Status::Ok();
  }

  Status Swap() override {
    // With every connection closed, SQLite has folded each WAL into its file and removed it.
    // A WAL still present means another process holds a file open: renaming under it could
    // pair the new file with the old WAL.
    for (Slot slot : {Slot::kLive, Slot::kRebuild}) {
      std::error_code ec;
      if (fs::exists(PathOf(slot) + "-wal", ec)) {
        return Status::Unavailable(PathOf(slot) +
                                   "-wal exists: another process has the "
                                   "database open; close it (use the query API instead)");
      }
    }
    if (std::rename(PathOf(Slot::kRebuild).c_str(), path_.c_str()) != 0) {
      return Status::Unavailable("cannot rename " + PathOf(Slot::kRebuild) + " to " + path_ + ": " +
                                 std::strerror(errno));
    }
    // Make the rename durable.
    fs::path parent = fs::path(path_).parent_path();
    Fd dir(open(parent.empty() ? "." : parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (dir.get() >= 0) fsync(dir.get());
    return Status::Ok();
  }

  std::string Describe(Slot slot) const override { return "SQLite file " + PathOf(slot); }

 private:
  std::string PathOf(Slot slot) const { return slot == Slot::kLive ? path_ : path_ + ".rebuild"; }

  std::string path_;
  Fd lock_;
};

}  // namespace

std::unique_ptr<Target> NewSqliteTarget(const SqliteTarget& config) {
  return std::make_unique<SqliteTargetImpl>(config);
}

}  // namespace sidelog::consolidator
