// Helpers for unit tests: a temporary directory removed at the end of the test, and a small
// builder for append requests.
#pragma once

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <string>

#include "sidelog/event_log.h"

namespace sidelog::testing {

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "sidelog-test.XXXXXX").string();
    path_ = mkdtemp(tmpl.data());
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  std::string File(const std::string& name) const { return path_ + "/" + name; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

inline EventInput Ev(const std::string& type, Json data = Json::object(),
                     const std::string& id = "") {
  EventInput e;
  e.type = type;
  e.data = std::move(data);
  e.id = id;
  return e;
}

inline AppendRequest Req(const std::string& stream, const std::string& entity,
                         std::vector<EventInput> events,
                         ExpectedVersion expected = ExpectedVersion::Any()) {
  AppendRequest r;
  r.stream = stream;
  r.entity = entity;
  r.events = std::move(events);
  r.expected = expected;
  return r;
}

inline std::shared_ptr<const Rules> MustCompile(const std::string& json) {
  auto r = Rules::Compile(Json::parse(json));
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return r.ok() ? *r : Rules::Default();
}

}  // namespace sidelog::testing
