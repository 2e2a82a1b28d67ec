// YAML documents as JSON, with the line of every node, so configuration loaders (sidecar,
// consolidator) can validate JSON and still report "file:line: field: message".
#pragma once

#include <map>
#include <string>

#include "sidelog/event.h"
#include "sidelog/status.h"

namespace sidelog {

// Something in a configuration that loads but should change (a deprecated spelling). Loaders
// collect these; the program logs them once its logging is set up (LogConfigWarnings).
struct ConfigWarning {
  std::string file;
  int line = 0;       // 1-based; 0 when unknown
  std::string field;  // dotted, like "streams[0].entity.stateMachine.transitions[1].on"
  std::string message;
};

struct YamlDocument {
  Json root;                         // scalars typed as YAML 1.2 core; quoted ones stay strings
  std::map<std::string, int> lines;  // JSON pointer of each node -> 1-based line
  std::string origin;                // the file name, for messages

  // "origin:line: field: message", with the line of `pointer` or its nearest ancestor, and the
  // field written as "streams[0].entity.reducers" (context().rule holds the same field).
  Status Error(const std::string& pointer, const std::string& message) const;
  // The same place and field, for a warning.
  ConfigWarning Warning(const std::string& pointer, const std::string& message) const;

 private:
  // The line of `pointer` or its nearest ancestor; 0 when none has one.
  int LineOf(const std::string& pointer) const;
};

// Parses YAML text. Invalid (naming origin and line) when it is not YAML.
Result<YamlDocument> ParseYaml(const std::string& text, const std::string& origin);
// Reads a file and parses it.
Result<YamlDocument> LoadYamlFile(const std::string& path);

// "/streams/0/entity" -> "streams[0].entity"
std::string DottedPointer(const std::string& pointer);
// Escapes a key for use as a JSON pointer token (~ -> ~0, / -> ~1).
std::string EscapePointerToken(const std::string& key);

}  // namespace sidelog
