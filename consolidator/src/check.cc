#include "check.h"

#include <filesystem>

#include "projection.h"
#include "queries.h"
#include "sidelog/event.h"
#include "target.h"

namespace sidelog::consolidator {

Status CheckAgainstSqlite(const ConsolidatorConfig& config, const std::string& dir) {
  ConsolidatorConfig scratch = config;
  const std::string path = dir + "/sidelog-check-" + NewUuidV7() + ".db";
  scratch.postgres.reset();
  scratch.sqlite = SqliteTarget{path};
  Status st;
  {
    std::unique_ptr<Target> target = Target::FromConfig(scratch);
    auto open = [&] {
      return Projection::Open(scratch, [t = target.get()] { return t->OpenWriter(Slot::kLive); });
    };
    // Twice: the schema runs at every start, so it must apply on top of itself.
    auto projection = open();
    if (projection.ok()) {
      projection.value().reset();
      projection = open();
    }
    if (!projection.ok()) {
      st = projection.status();
    } else {
      Queries queries(scratch, target.get());
      st = queries.Check();
    }
  }
  std::error_code ec;
  for (const char* suffix : {"", "-wal", "-shm", ".lock", "-journal"}) {
    std::filesystem::remove(path + suffix, ec);
  }
  return st;
}

}  // namespace sidelog::consolidator
