#include "sidelog/names.h"

#include <array>
#include <cctype>

namespace sidelog {
namespace {

bool IsLowerAlnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }
bool IsAlpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool IsDigit(char c) { return c >= '0' && c <= '9'; }
bool IsTokenSafe(char c) { return IsAlpha(c) || IsDigit(c) || c == '_' || c == '-'; }

Status Broken(std::string rule, std::string message) {
  ErrorContext ctx;
  ctx.rule = std::move(rule);
  return Status::Invalid(std::move(message), std::move(ctx));
}

std::string Quote(std::string_view s) {
  std::string out = "\"";
  for (char c : s.substr(0, 64)) {
    auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u >= 0x7f || c == '"' || c == '\\') {
      static const char* kHex = "0123456789abcdef";
      out += "\\x";
      out += kHex[u >> 4];
      out += kHex[u & 15];
    } else {
      out += c;
    }
  }
  if (s.size() > 64) out += "...";
  return out + "\"";
}

}  // namespace

Status ValidateStreamName(std::string_view name) {
  if (name.empty() || name.size() > 63) {
    return Broken("streamName.length", "stream name " + Quote(name) +
                                           " must be 1-63 characters (a DNS-1123 label), it has " +
                                           std::to_string(name.size()));
  }
  for (char c : name) {
    if (!IsLowerAlnum(c) && c != '-') {
      return Broken("streamName.charset",
                    "stream name " + Quote(name) +
                        " may contain only lowercase letters, digits and '-' (a DNS-1123 label)");
    }
  }
  if (name.front() == '-' || name.back() == '-') {
    return Broken("streamName.edges",
                  "stream name " + Quote(name) + " must start and end with a letter or digit");
  }
  return Status::Ok();
}

Status ValidateEntityId(std::string_view id) {
  if (id.empty() || id.size() > 200) {
    return Broken("entityId.length",
                  "entity id must be 1-200 bytes, it has " + std::to_string(id.size()));
  }
  for (char c : id) {
    auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u >= 0x7f) {
      return Broken("entityId.charset",
                    "entity id " + Quote(id) + " must be printable ASCII without whitespace");
    }
    if (c == '/' || c == '*' || c == '>') {
      return Broken("entityId.reserved", "entity id " + Quote(id) + " must not contain '" +
                                             std::string(1, c) +
                                             "' ('/', '*' and '>' are reserved)");
    }
  }
  return Status::Ok();
}

Status ValidateEventType(std::string_view type) {
  if (type.empty() || type.size() > 128) {
    return Broken("eventType.length",
                  "event type must be 1-128 characters, it has " + std::to_string(type.size()));
  }
  if (!IsAlpha(type.front())) {
    return Broken("eventType.start", "event type " + Quote(type) + " must start with a letter");
  }
  for (char c : type) {
    if (!IsAlpha(c) && !IsDigit(c) && c != '.' && c != '_' && c != '-') {
      return Broken("eventType.charset", "event type " + Quote(type) +
                                             " may contain only letters, digits, '.', '_' and '-'");
    }
  }
  return Status::Ok();
}

Status ValidateEventId(std::string_view id) {
  if (id.empty() || id.size() > 128) {
    return Broken("eventId.length",
                  "event id must be 1-128 bytes, it has " + std::to_string(id.size()));
  }
  for (char c : id) {
    auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u >= 0x7f) {
      return Broken("eventId.charset",
                    "event id " + Quote(id) + " must be printable ASCII without whitespace");
    }
  }
  return Status::Ok();
}

Status ValidateMetadataKey(std::string_view key) {
  static constexpr std::array<std::string_view, 11> kReserved = {
      "specversion",     "id",         "source", "type",        "subject", "time",
      "datacontenttype", "dataschema", "data",   "data_base64", "sidelog"};
  if (key.empty() || key.size() > 20) {
    return Broken(
        "metadata.keyLength",
        "metadata key " + Quote(key) + " must be 1-20 characters (a CloudEvents extension name)");
  }
  for (char c : key) {
    if (!IsLowerAlnum(c)) {
      return Broken(
          "metadata.keyCharset",
          "metadata key " + Quote(key) +
              " may contain only lowercase letters and digits (a CloudEvents extension name)");
    }
  }
  for (auto r : kReserved) {
    if (key == r) {
      return Broken("metadata.reserved",
                    "metadata key " + Quote(key) + " is a reserved CloudEvents attribute");
    }
  }
  if (key.starts_with("sidelog")) {
    return Broken("metadata.reserved",
                  "metadata key " + Quote(key) + " uses the reserved prefix \"sidelog\"");
  }
  return Status::Ok();
}

Status ValidateMetadataValue(std::string_view key, std::string_view value) {
  if (value.size() > 4096) {
    return Broken("metadata.valueLength", "metadata value of " + Quote(key) +
                                              " must be at most 4096 bytes, it has " +
                                              std::to_string(value.size()));
  }
  return Status::Ok();
}

bool IsValidUtf8(std::string_view s, size_t* bad_offset) {
  size_t i = 0;
  auto fail = [&] {
    if (bad_offset) *bad_offset = i;
    return false;
  };
  while (i < s.size()) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t n;
    uint32_t cp;
    if (c >= 0xc2 && c <= 0xdf) {
      n = 1;
      cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
      n = 2;
      cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
      n = 3;
      cp = c & 0x07;
    } else {
      return fail();
    }
    if (i + n >= s.size()) return fail();
    for (size_t k = 1; k <= n; ++k) {
      auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xc0) != 0x80) return fail();
      cp = (cp << 6) | (cc & 0x3f);
    }
    if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) || cp > 0x10ffff ||
        (cp >= 0xd800 && cp <= 0xdfff)) {
      return fail();
    }
    i += n + 1;
  }
  return true;
}

std::string EncodeSubjectToken(std::string_view entity_id) {
  static const char* kHex = "0123456789ABCDEF";
  std::string out;
  out.reserve(entity_id.size());
  for (char c : entity_id) {
    if (IsTokenSafe(c)) {
      out += c;
    } else {
      auto u = static_cast<unsigned char>(c);
      out += '%';
      out += kHex[u >> 4];
      out += kHex[u & 15];
    }
  }
  return out;
}

bool DecodeSubjectToken(std::string_view token, std::string* entity_id) {
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  std::string out;
  for (size_t i = 0; i < token.size(); ++i) {
    if (token[i] != '%') {
      if (!IsTokenSafe(token[i])) return false;
      out += token[i];
      continue;
    }
    if (i + 2 >= token.size()) return false;
    int hi = hex(token[i + 1]);
    int lo = hex(token[i + 2]);
    if (hi < 0 || lo < 0) return false;
    out += static_cast<char>(hi * 16 + lo);
    i += 2;
  }
  *entity_id = std::move(out);
  return true;
}

std::string JetStreamName(std::string_view ns, std::string_view stream) {
  return "SIDELOG_" + std::string(ns) + "_" + std::string(stream);
}

std::string StreamSubjects(std::string_view ns, std::string_view stream) {
  return "sidelog." + std::string(ns) + "." + std::string(stream) + ".>";
}

std::string EntitySubject(std::string_view ns, std::string_view stream, std::string_view entity) {
  return "sidelog." + std::string(ns) + "." + std::string(stream) + "." +
         EncodeSubjectToken(entity);
}

std::string SidecarInboxPrefix(std::string_view ns, std::string_view service) {
  return "_INBOX.sidelog." + std::string(ns) + ".svc." + std::string(service);
}

std::string ConsolidatorInboxPrefix(std::string_view ns, std::string_view consolidator) {
  return "_INBOX.sidelog." + std::string(ns) + ".con." + std::string(consolidator);
}

}  // namespace sidelog
