#include "schema.h"

#include <string>
#include <vector>

namespace sidelog::schema {
namespace {

// Migration N takes the schema from version N-1 to N. Never edit a released migration: append.
const std::vector<std::string> kMigrations = {
    // 1: the first schema.
    R"sql(
CREATE TABLE meta (
  key   TEXT PRIMARY KEY,
  value TEXT NOT NULL
) WITHOUT ROWID;

-- One row per stream. In standalone mode positions are a local sequence and the watermark is
-- always last_position; in replicated mode positions are JetStream sequences and the watermark
-- is the last sequence up to which every commit is here.
CREATE TABLE streams (
  id            INTEGER PRIMARY KEY,
  name          TEXT NOT NULL UNIQUE,
  last_position INTEGER NOT NULL DEFAULT 0,
  watermark     INTEGER NOT NULL DEFAULT 0,
  entities      INTEGER NOT NULL DEFAULT 0,
  commits       INTEGER NOT NULL DEFAULT 0,
  events        INTEGER NOT NULL DEFAULT 0,
  origin        TEXT              -- replicated: the JetStream stream's identity (created time)
);

-- One row per commit: 1..N events of one entity at one position.
CREATE TABLE commits (
  stream_id     INTEGER NOT NULL,
  position      INTEGER NOT NULL,
  entity        TEXT NOT NULL,
  commit_id     TEXT NOT NULL,
  first_version INTEGER NOT NULL,
  last_version  INTEGER NOT NULL,
  PRIMARY KEY (stream_id, position)
) WITHOUT ROWID;

-- The current head of each entity.
CREATE TABLE entities (
  stream_id INTEGER NOT NULL,
  entity    TEXT NOT NULL,
  version   INTEGER NOT NULL,
  time      INTEGER NOT NULL,   -- microseconds; never decreases
  status    TEXT NOT NULL,      -- state machine state ('' without one)
  deleted   INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (stream_id, entity)
) WITHOUT ROWID;

-- Events are keyed by position, so appends only ever touch the end of this tree; the two
-- indexes serve entity reads (by version) and idempotency (by id).
CREATE TABLE events (
  stream_id INTEGER NOT NULL,
  position  INTEGER NOT NULL,
  idx       INTEGER NOT NULL,
  entity    TEXT NOT NULL,
  version   INTEGER NOT NULL,
  id        TEXT NOT NULL,
  type      TEXT NOT NULL,
  time      INTEGER NOT NULL,
  status    TEXT NOT NULL,
  source    TEXT NOT NULL,
  data      TEXT NOT NULL,      -- JSON
  metadata  TEXT,               -- JSON object of strings, NULL when empty
  PRIMARY KEY (stream_id, position, idx)
) WITHOUT ROWID;
CREATE UNIQUE INDEX events_by_entity ON events (stream_id, entity, version);
CREATE UNIQUE INDEX events_by_id ON events (stream_id, id, entity);

-- Folded state every K versions, valid only for the rules whose hash it carries.
CREATE TABLE snapshots (
  stream_id  INTEGER NOT NULL,
  entity     TEXT NOT NULL,
  version    INTEGER NOT NULL,
  rules_hash TEXT NOT NULL,
  status     TEXT NOT NULL,
  deleted    INTEGER NOT NULL,
  time       INTEGER NOT NULL,
  state      TEXT NOT NULL,
  PRIMARY KEY (stream_id, entity, version)
) WITHOUT ROWID;
)sql",
    // 2: one row per commit. Its events are a JSON array in the commit row, so an append
    // writes one b-tree entry per commit plus one per event id (instead of three per event);
    // entity reads go through commits_by_entity. Each element holds what differs per event:
    // {"id", "type", "time", "data"} and, when set, "state", "metadata", and "source" (when
    // it is not the commit's). An event's version is first_version + its index.
    R"sql(
CREATE TABLE commits_v2 (
  stream_id     INTEGER NOT NULL,
  position      INTEGER NOT NULL,
  entity        TEXT NOT NULL,
  commit_id     TEXT NOT NULL,
  first_version INTEGER NOT NULL,
  last_version  INTEGER NOT NULL,
  first_time    INTEGER NOT NULL,   -- the first event's time, for state at a time
  source        TEXT NOT NULL,      -- the producing service's source of its events
  events        TEXT NOT NULL,      -- JSON array, in version order
  PRIMARY KEY (stream_id, position)
) WITHOUT ROWID;
INSERT INTO commits_v2
SELECT c.stream_id, c.position, c.entity, c.commit_id, c.first_version, c.last_version,
       f.time, f.source,
       (SELECT json_group_array(json(x)) FROM (
          SELECT json_patch(
                   json_object('id', e.id, 'type', e.type, 'time', e.time, 'data', json(e.data)),
                   json_object('state', nullif(e.status, ''), 'metadata', json(e.metadata),
                               'source', nullif(e.source, f.source))) AS x
          FROM events e WHERE e.stream_id = c.stream_id AND e.position = c.position
          ORDER BY e.idx))
FROM commits c
JOIN events f ON f.stream_id = c.stream_id AND f.position = c.position AND f.idx = 0;

-- Idempotency: where each event id of an entity is stored.
CREATE TABLE event_ids (
  stream_id INTEGER NOT NULL,
  id        TEXT NOT NULL,
  entity    TEXT NOT NULL,
  position  INTEGER NOT NULL,
  idx       INTEGER NOT NULL,
  PRIMARY KEY (stream_id, id, entity)
) WITHOUT ROWID;
INSERT INTO event_ids SELECT stream_id, id, entity, position, idx FROM events;

DROP TABLE events;
DROP TABLE commits;
ALTER TABLE commits_v2 RENAME TO commits;
CREATE UNIQUE INDEX commits_by_entity ON commits (stream_id, entity, last_version);
)sql",
    // 3: an entity's head (version, time, state) is its newest commit, found through
    // commits_by_entity. `entities` keeps one row per entity, written when the entity is
    // created and when it is deleted, so an append to an existing entity writes no page there:
    // in a group commit of appends to many entities, each head row was a page of its own.
    R"sql(
CREATE TABLE entities_v3 (
  stream_id INTEGER NOT NULL,
  entity    TEXT NOT NULL,
  deleted   INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (stream_id, entity)
) WITHOUT ROWID;
INSERT INTO entities_v3 SELECT stream_id, entity, deleted FROM entities;
DROP TABLE entities;
ALTER TABLE entities_v3 RENAME TO entities;
)sql",
    // 4: a commit whose ids are consecutive UUIDs (those the log generates for a commit are:
    // base, base + 1, ...) stores them as one run instead of one event_ids row per event. An id
    // is looked up in event_ids, then in the run with the greatest first_id <= it. Runs never
    // overlap (checked when one is stored), so that run is the only candidate.
    R"sql(
CREATE TABLE event_id_runs (
  stream_id INTEGER NOT NULL,
  first_id  TEXT NOT NULL,      -- canonical lowercase UUIDs: text order is numeric order
  last_id   TEXT NOT NULL,
  entity    TEXT NOT NULL,
  position  INTEGER NOT NULL,   -- the commit; the id first_id + k is its event k
  PRIMARY KEY (stream_id, first_id)
) WITHOUT ROWID;
)sql",
    // 5: the entity index is a table the writer fills a little at a time instead of an index on
    // commits. An index entry per commit dirtied one page per entity per group commit (an
    // entity's entries sit together in the b-tree); now the writer keeps recent commits in
    // memory by entity and writes an entity's entries many at a time, once they have waited
    // their turn. Every commit below unindexed_from is in entity_commits; above it, those the
    // writer had not written yet are found again at open. index_generation counts the group
    // commits that wrote entity_commits (readers use it to know what their snapshot holds).
    R"sql(
CREATE TABLE entity_commits (
  stream_id    INTEGER NOT NULL,
  entity       TEXT NOT NULL,
  last_version INTEGER NOT NULL,
  position     INTEGER NOT NULL,
  PRIMARY KEY (stream_id, entity, last_version)
) WITHOUT ROWID;
ALTER TABLE streams ADD COLUMN unindexed_from INTEGER NOT NULL DEFAULT 1;
ALTER TABLE streams ADD COLUMN index_generation INTEGER NOT NULL DEFAULT 0;
INSERT INTO entity_commits SELECT stream_id, entity, last_version, position FROM commits;
UPDATE streams SET unindexed_from =
  coalesce((SELECT max(position) FROM commits WHERE commits.stream_id = streams.id), 0) + 1;
DROP INDEX commits_by_entity;
)sql",
    // 6: commits is a rowid table keyed by stream_id * 2^40 + position. Keyed by (stream_id,
    // position) WITHOUT ROWID, a group commit that filled the last leaf had SQLite rebalance it
    // with its two neighbours, rewriting all three (4 leaf and 2 interior pages per group commit
    // of 16 appends); a rowid table appends a leaf instead. stream_id and position remain as
    // virtual columns for reading.
    R"sql(
CREATE TABLE commits_v6 (
  key           INTEGER PRIMARY KEY,  -- stream_id << 40 | position
  entity        TEXT NOT NULL,
  commit_id     TEXT NOT NULL,
  first_version INTEGER NOT NULL,
  last_version  INTEGER NOT NULL,
  first_time    INTEGER NOT NULL,
  source        TEXT NOT NULL,
  events        TEXT NOT NULL,
  stream_id     INTEGER GENERATED ALWAYS AS (key >> 40) VIRTUAL,
  position      INTEGER GENERATED ALWAYS AS (key & 1099511627775) VIRTUAL
);
INSERT INTO commits_v6 (key, entity, commit_id, first_version, last_version, first_time, source,
                        events)
SELECT (stream_id << 40) + position, entity, commit_id, first_version, last_version, first_time,
       source, events
FROM commits ORDER BY stream_id, position;
DROP TABLE commits;
ALTER TABLE commits_v6 RENAME TO commits;
)sql",
};

}  // namespace

Status Migrate(sqlite::Db& db, int target) {
  int current = 0;
  {
    auto stmt = db.Prepare("PRAGMA user_version");
    if (!stmt.ok()) return stmt.status();
    if (stmt->Step() != SQLITE_ROW) return sqlite::Error(db, "reading the schema version");
    current = static_cast<int>(stmt->Int(0));
  }
  if (current > kVersion) {
    return Status::Internal("the event log has schema version " + std::to_string(current) +
                            ", newer than this build's " + std::to_string(kVersion) +
                            "; upgrade Sidelog");
  }
  for (int v = current + 1; v <= target; ++v) {
    std::string sql = "BEGIN IMMEDIATE;" + kMigrations[v - 1] +
                      "PRAGMA user_version = " + std::to_string(v) + "; COMMIT;";
    if (auto s = db.Exec(sql); !s.ok()) {
      (void)db.Exec("ROLLBACK");
      return Status::Internal("migrating the event log to schema " + std::to_string(v) + ": " +
                              s.message());
    }
  }
  return Status::Ok();
}

}  // namespace sidelog::schema
