// Cursor: how far a source stream has been read or folded. Events are ordered by (position,
// index): a commit's events share its position and are ordered by index. A cursor names the
// last event done; index -1 means the whole commit at `position` is done, so a checkpoint can
// stop between commits or, with its index, inside one.
#pragma once

#include <cstdint>
#include <limits>
#include <string>

namespace sidelog::consolidator {

struct Cursor {
  int64_t position = 0;  // 0: nothing yet
  int32_t index = -1;    // -1: every event of the commit at `position`

  // True when the event (position, index) comes after this cursor.
  bool Before(int64_t pos, int32_t idx) const {
    return pos > position || (pos == position && index >= 0 && idx > index);
  }
  // For comparing cursors: a whole commit sorts after any event in it.
  int64_t Rank() const { return index < 0 ? std::numeric_limits<int32_t>::max() : index; }
  bool operator<(const Cursor& o) const {
    return position != o.position ? position < o.position : Rank() < o.Rank();
  }
  bool operator==(const Cursor& o) const = default;

  // The SSE Last-Event-ID that resumes right after this cursor: "P.I", or "P" for a whole
  // commit (the sidecar then resumes after commit P).
  std::string LastEventId() const {
    return index < 0 ? std::to_string(position)
                     : std::to_string(position) + "." + std::to_string(index);
  }
  std::string ToString() const { return LastEventId(); }
};

}  // namespace sidelog::consolidator
