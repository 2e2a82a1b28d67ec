// A VFS over SQLite's default one that gathers the writes to a WAL file into one write.
//
// SQLite writes each WAL frame with two write calls (its 24-byte header, then the page), so a
// group commit of 30 frames costs 60 system calls before its fsync. This VFS keeps contiguous
// WAL writes in a buffer and writes them with one call at the end of each commit: a frame
// header whose second field (the database size after the commit) is not zero marks a commit's
// last frame, and the write of that frame's page writes the buffer and returns its result to
// SQLite, so a failed write fails the commit as it would have without this VFS. The buffer is
// also written before anything that could need its bytes: a sync, a read, a size or truncate
// of the WAL, a file control, closing, and (as a safety net) before the connection touches the
// shared WAL index lock or barrier, which it does before publishing a commit to readers.
#include "wal_vfs.h"

#include <algorithm>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <thread>

#include "fault.h"

namespace sidelog::sqlite {
namespace {

constexpr size_t kMaxBuffered = 4 << 20;  // bytes held before writing anyway

struct File {
  sqlite3_file base;
  sqlite3_file* real;  // the default VFS's file, allocated right after this struct
  bool wal = false;
  std::string path;           // WAL: its name; database: the name of its WAL
  std::string buffer;         // WAL: bytes not yet written
  sqlite3_int64 at = 0;       // WAL: the file offset of buffer[0]
  bool commit_frame = false;  // WAL: the last header written was a commit frame's
  // WAL: guards the buffer. Its connection's thread is the only user, except a database file
  // of another connection to the same log flushing it (FlushWalOf).
  std::mutex mu;
};

constexpr int kFrameHeaderBytes = 24;

sqlite3_vfs* g_real = nullptr;
sqlite3_vfs g_vfs;
std::mutex g_wal_mu;
std::map<std::string, File*> g_wal_files;  // open WAL files by name

// The default VFS writes at most 128 KiB - 1 per call (it masks larger sizes, so a multiple
// of 128 KiB would write nothing): the buffer goes out in pieces below that.
constexpr size_t kMaxWrite = 124 << 10;

// Test builds: a slow or stalled disk (fault.h).
void DiskDelay() {
  if (int64_t ms = FaultValue("SIDELOG_FAULT_DISK_DELAY_FILE"); ms > 0) {
    std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  }
}

int FlushLocked(File* f) {
  int rc = SQLITE_OK;
  if (!f->buffer.empty()) DiskDelay();
  for (size_t done = 0; done < f->buffer.size() && rc == SQLITE_OK;) {
    const size_t n = std::min(kMaxWrite, f->buffer.size() - done);
    rc = f->real->pMethods->xWrite(f->real, f->buffer.data() + done, static_cast<int>(n),
                                   f->at + static_cast<sqlite3_int64>(done));
    done += n;
  }
  f->buffer.clear();
  return rc;
}

int Flush(File* f) {
  if (!f->wal) return SQLITE_OK;
  std::lock_guard<std::mutex> lock(f->mu);
  return FlushLocked(f);
}

// Flushes the WAL of database file `f`.
int FlushWalOf(File* f) {
  if (f->wal) return Flush(f);
  std::lock_guard<std::mutex> lock(g_wal_mu);
  auto it = g_wal_files.find(f->path);
  return it == g_wal_files.end() ? SQLITE_OK : Flush(it->second);
}

File* Of(sqlite3_file* file) { return reinterpret_cast<File*>(file); }

int Close(sqlite3_file* file) {
  File* f = Of(file);
  int rc = Flush(f);
  if (f->wal) {
    std::lock_guard<std::mutex> lock(g_wal_mu);
    auto it = g_wal_files.find(f->path);
    if (it != g_wal_files.end() && it->second == f) g_wal_files.erase(it);
  }
  int closed = f->real->pMethods ? f->real->pMethods->xClose(f->real) : SQLITE_OK;
  f->~File();
  return rc != SQLITE_OK ? rc : closed;
}

int Read(sqlite3_file* file, void* out, int n, sqlite3_int64 offset) {
  File* f = Of(file);
  if (int rc = Flush(f); rc != SQLITE_OK) return rc;
  return f->real->pMethods->xRead(f->real, out, n, offset);
}

int Write(sqlite3_file* file, const void* data, int n, sqlite3_int64 offset) {
  File* f = Of(file);
  if (!f->wal) {
    DiskDelay();
    return f->real->pMethods->xWrite(f->real, data, n, offset);
  }
  std::lock_guard<std::mutex> lock(f->mu);
  if (!f->buffer.empty() && (offset != f->at + static_cast<sqlite3_int64>(f->buffer.size()) ||
                             f->buffer.size() + static_cast<size_t>(n) > kMaxBuffered)) {
    if (int rc = FlushLocked(f); rc != SQLITE_OK) return rc;
  }
  if (f->buffer.empty()) f->at = offset;
  f->buffer.append(static_cast<const char*>(data), static_cast<size_t>(n));
  if (n == kFrameHeaderBytes) {
    const auto* h = static_cast<const unsigned char*>(data);
    f->commit_frame = (h[4] | h[5] | h[6] | h[7]) != 0;  // database size after a commit
    return SQLITE_OK;
  }
  if (f->commit_frame) {  // the commit's last page: write the commit now
    f->commit_frame = false;
    return FlushLocked(f);
  }
  return SQLITE_OK;
}

int Truncate(sqlite3_file* file, sqlite3_int64 size) {
  File* f = Of(file);
  if (int rc = Flush(f); rc != SQLITE_OK) return rc;
  return f->real->pMethods->xTruncate(f->real, size);
}

int Sync(sqlite3_file* file, int flags) {
  File* f = Of(file);
  if (int rc = Flush(f); rc != SQLITE_OK) return rc;
  DiskDelay();
  return f->real->pMethods->xSync(f->real, flags);
}

int FileSize(sqlite3_file* file, sqlite3_int64* size) {
  File* f = Of(file);
  if (int rc = Flush(f); rc != SQLITE_OK) return rc;
  return f->real->pMethods->xFileSize(f->real, size);
}

int Lock(sqlite3_file* file, int level) {
  return Of(file)->real->pMethods->xLock(Of(file)->real, level);
}
int Unlock(sqlite3_file* file, int level) {
  return Of(file)->real->pMethods->xUnlock(Of(file)->real, level);
}
int CheckReservedLock(sqlite3_file* file, int* out) {
  return Of(file)->real->pMethods->xCheckReservedLock(Of(file)->real, out);
}

int FileControl(sqlite3_file* file, int op, void* arg) {
  File* f = Of(file);
  if (int rc = Flush(f); rc != SQLITE_OK) return rc;
  return f->real->pMethods->xFileControl(f->real, op, arg);
}

int SectorSize(sqlite3_file* file) { return Of(file)->real->pMethods->xSectorSize(Of(file)->real); }
int DeviceCharacteristics(sqlite3_file* file) {
  return Of(file)->real->pMethods->xDeviceCharacteristics(Of(file)->real);
}

int ShmMap(sqlite3_file* file, int region, int size, int extend, void volatile** out) {
  return Of(file)->real->pMethods->xShmMap(Of(file)->real, region, size, extend, out);
}

int ShmLock(sqlite3_file* file, int offset, int n, int flags) {
  File* f = Of(file);
  if (int rc = FlushWalOf(f); rc != SQLITE_OK) return rc;
  return f->real->pMethods->xShmLock(f->real, offset, n, flags);
}

void ShmBarrier(sqlite3_file* file) {
  File* f = Of(file);
  // Normally empty here: a commit's frames were written with its last page.
  (void)FlushWalOf(f);
  f->real->pMethods->xShmBarrier(f->real);
}

int ShmUnmap(sqlite3_file* file, int delete_flag) {
  return Of(file)->real->pMethods->xShmUnmap(Of(file)->real, delete_flag);
}

int Fetch(sqlite3_file* file, sqlite3_int64 offset, int n, void** out) {
  File* f = Of(file);
  if (int rc = Flush(f); rc != SQLITE_OK) return rc;
  return f->real->pMethods->xFetch(f->real, offset, n, out);
}

int Unfetch(sqlite3_file* file, sqlite3_int64 offset, void* p) {
  return Of(file)->real->pMethods->xUnfetch(Of(file)->real, offset, p);
}

const sqlite3_io_methods kMethods = {
    3,
    Close,
    Read,
    Write,
    Truncate,
    Sync,
    FileSize,
    Lock,
    Unlock,
    CheckReservedLock,
    FileControl,
    SectorSize,
    DeviceCharacteristics,
    ShmMap,
    ShmLock,
    ShmBarrier,
    ShmUnmap,
    Fetch,
    Unfetch,
};

int Open(sqlite3_vfs*, sqlite3_filename name, sqlite3_file* file, int flags, int* out_flags) {
  File* f = new (file) File();
  f->real = reinterpret_cast<sqlite3_file*>(f + 1);
  std::memset(f->real, 0, static_cast<size_t>(g_real->szOsFile));
  int rc = g_real->xOpen(g_real, name, f->real, flags, out_flags);
  if (rc != SQLITE_OK) {
    f->~File();
    file->pMethods = nullptr;
    return rc;
  }
  // The real methods' version decides which optional methods exist; ours forward them all.
  if (f->real->pMethods->iVersion < 3) {
    f->real->pMethods->xClose(f->real);
    f->~File();
    file->pMethods = nullptr;
    return SQLITE_CANTOPEN;
  }
  f->wal = (flags & SQLITE_OPEN_WAL) != 0;
  if (name != nullptr) {
    f->path = f->wal ? std::string(name) : std::string(name) + "-wal";
  }
  if (f->wal) {
    std::lock_guard<std::mutex> lock(g_wal_mu);
    g_wal_files[f->path] = f;
  }
  file->pMethods = &kMethods;
  return SQLITE_OK;
}

}  // namespace

const char* WalBatchingVfs() {
  static std::once_flag once;
  static bool ok = false;
  std::call_once(once, [] {
    g_real = sqlite3_vfs_find(nullptr);
    if (g_real == nullptr) return;
    // Everything but opening files is the default VFS's own.
    g_vfs = *g_real;
    g_vfs.pNext = nullptr;
    g_vfs.szOsFile = static_cast<int>(sizeof(File)) + g_real->szOsFile;
    g_vfs.zName = "sidelog-wal-batch";
    g_vfs.xOpen = Open;
    ok = sqlite3_vfs_register(&g_vfs, 0) == SQLITE_OK;
  });
  return ok ? g_vfs.zName : nullptr;
}

}  // namespace sidelog::sqlite
