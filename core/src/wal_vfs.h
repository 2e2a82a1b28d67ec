// A VFS that writes each commit's WAL frames with one write call (wal_vfs.cc).
#pragma once

#include <sqlite3.h>

namespace sidelog::sqlite {

// Registers the VFS once and returns its name for sqlite3_open_v2, or nullptr when the default
// VFS cannot be wrapped (then open with the default).
const char* WalBatchingVfs();

}  // namespace sidelog::sqlite
