#include "sidelog/event.h"

#include <openssl/evp.h>
#include <openssl/rand.h>

#include <pthread.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <mutex>

#include "fault.h"
#include "sidelog/names.h"

namespace sidelog {

Status ValidateEventInput(const EventInput& event, const std::string& where) {
  auto prefixed = [&](Status s) {
    return Status(s.code(), where + ": " + s.message(), s.context());
  };
  if (!event.id.empty()) {
    if (auto s = ValidateEventId(event.id); !s.ok()) return prefixed(s);
  }
  if (auto s = ValidateEventType(event.type); !s.ok()) return prefixed(s);
  for (const auto& [k, v] : event.metadata) {
    if (auto s = ValidateMetadataKey(k); !s.ok()) return prefixed(s);
    if (auto s = ValidateMetadataValue(k, v); !s.ok()) return prefixed(s);
  }
  return Status::Ok();
}

Json ToCloudEvent(const StoredEvent& e) {
  Json j = Json::object();
  j["specversion"] = "1.0";
  j["id"] = e.id;
  j["source"] = e.source;
  j["type"] = e.type;
  j["subject"] = e.entity;
  j["time"] = FormatTime(e.time);
  j["datacontenttype"] = "application/json";
  j["data"] = e.data;
  j["sidelogstream"] = e.stream;
  j["sidelogversion"] = e.version;
  if (e.position > 0) {
    j["sidelogposition"] = e.position;
  }
  j["sidelogindex"] = e.index;
  if (!e.state.empty()) j["sidelogstate"] = e.state;
  for (const auto& [k, v] : e.metadata) j[k] = v;
  return j;
}

Result<StoredEvent> FromCloudEvent(const Json& j) {
  if (!j.is_object()) return Status::Invalid("a CloudEvent must be a JSON object");
  auto str = [&](const char* key, std::string* out) -> Status {
    auto it = j.find(key);
    if (it == j.end() || !it->is_string()) {
      return Status::Invalid(std::string("CloudEvent attribute \"") + key +
                             "\" is missing or not a string");
    }
    *out = it->get<std::string>();
    return Status::Ok();
  };
  auto num = [&](const char* key, int64_t* out, bool required) -> Status {
    auto it = j.find(key);
    if (it == j.end()) {
      return required
                 ? Status::Invalid(std::string("CloudEvent attribute \"") + key + "\" is missing")
                 : Status::Ok();
    }
    if (!it->is_number_integer()) {
      return Status::Invalid(std::string("CloudEvent attribute \"") + key +
                             "\" must be an integer");
    }
    *out = it->get<int64_t>();
    return Status::Ok();
  };
  StoredEvent e;
  std::string specversion, time;
  for (auto s : {str("specversion", &specversion), str("id", &e.id), str("source", &e.source),
                 str("type", &e.type), str("subject", &e.entity), str("time", &time),
                 str("sidelogstream", &e.stream)}) {
    if (!s.ok()) return s;
  }
  if (specversion != "1.0") return Status::Invalid("CloudEvent specversion must be \"1.0\"");
  auto t = ParseTime(time);
  if (!t.ok()) return t.status();
  e.time = *t;
  int64_t index = 0;
  for (auto s : {num("sidelogversion", &e.version, true),
                 num("sidelogposition", &e.position, false), num("sidelogindex", &index, false)}) {
    if (!s.ok()) return s;
  }
  e.index = static_cast<int32_t>(index);
  if (auto it = j.find("data"); it != j.end()) e.data = *it;
  if (auto it = j.find("sidelogstate"); it != j.end() && it->is_string()) {
    e.state = it->get<std::string>();
  }
  static const char* kKnown[] = {"specversion",     "id",
                                 "source",          "type",
                                 "subject",         "time",
                                 "datacontenttype", "data",
                                 "sidelogstream",   "sidelogversion",
                                 "sidelogposition", "sidelogindex",
                                 "sidelogstate",    "dataschema"};
  for (const auto& [k, v] : j.items()) {
    bool known = false;
    for (const char* n : kKnown) known = known || k == n;
    if (known) continue;
    if (!v.is_string()) {
      return Status::Invalid("CloudEvent extension \"" + k + "\" must be a string");
    }
    e.metadata[k] = v.get<std::string>();
  }
  return e;
}

std::string CanonicalContent(const std::string& type, const Json& data, const Metadata& metadata) {
  Json j = Json::array({type, data, Json(metadata)});
  return j.dump();
}

std::string Sha256Hex(const std::string& bytes) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  // Fetched once: EVP_sha256() makes OpenSSL 3 look the algorithm up on every digest.
  static EVP_MD* const kSha256 = EVP_MD_fetch(nullptr, "SHA256", nullptr);
  EVP_Digest(bytes.data(), bytes.size(), digest, &len, kSha256 ? kSha256 : EVP_sha256(), nullptr);
  static const char* kHex = "0123456789abcdef";
  std::string out;
  out.reserve(2 * static_cast<std::string::size_type>(len));
  for (unsigned i = 0; i < len; ++i) {
    unsigned char b = digest[i];
    out += kHex[b >> 4];
    out += kHex[b & 15];
  }
  return out;
}

std::string CommitId(const std::string& stream, const std::string& entity,
                     const std::vector<std::string>& event_ids) {
  std::string input;
  input.reserve(stream.size() + entity.size() + 40 * event_ids.size());
  input.append(stream).push_back('\0');
  input.append(entity).push_back('\0');
  for (const auto& id : event_ids) input.append(id).push_back('\0');
  return Sha256Hex(input);
}

namespace {

// Random bytes from a per-thread pool: one RAND_bytes call per 25 ids instead of one per id
// (each call takes the DRBG's lock). A forked child starts with an empty pool, so it never
// repeats its parent's bytes.
thread_local unsigned char t_random_pool[256];
thread_local size_t t_random_used = sizeof t_random_pool;

void RandomBytes(unsigned char* out, size_t n) {
  static std::once_flag once;
  std::call_once(
      once, [] { pthread_atfork(nullptr, nullptr, [] { t_random_used = sizeof t_random_pool; }); });
  if (t_random_used + n > sizeof t_random_pool) {
    RAND_bytes(t_random_pool, sizeof t_random_pool);
    t_random_used = 0;
  }
  std::memcpy(out, t_random_pool + t_random_used, n);
  t_random_used += n;
}

}  // namespace

namespace {

using Uint128 = unsigned __int128;

constexpr bool IsDashAt(size_t i) { return i == 8 || i == 13 || i == 18 || i == 23; }

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

constexpr size_t kHexAt[32] = {0,  1,  2,  3,  4,  5,  6,  7,  9,  10, 11, 12, 14, 15, 16, 17,
                               19, 20, 21, 22, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35};

std::optional<Uint128> ParseUuid(std::string_view id) {
  if (id.size() != 36 || id[8] != '-' || id[13] != '-' || id[18] != '-' || id[23] != '-') {
    return std::nullopt;
  }
  uint64_t half[2] = {0, 0};
  for (size_t i = 0; i < 32; ++i) {
    int h = HexValue(id[kHexAt[i]]);
    if (h < 0) return std::nullopt;
    half[i / 16] = (half[i / 16] << 4) | static_cast<uint64_t>(h);
  }
  return (static_cast<Uint128>(half[0]) << 64) | half[1];
}

std::string FormatUuid(Uint128 v) {
  static const char* kHex = "0123456789abcdef";
  std::string out(36, '-');
  int shift = 124;
  for (size_t i = 0; i < out.size(); ++i) {
    if (IsDashAt(i)) continue;
    out[i] = kHex[static_cast<int>((v >> shift) & 15)];
    shift -= 4;
  }
  return out;
}

}  // namespace

std::string NewUuidV7() {
  unsigned char b[16];
  RandomBytes(b + 6, 10);
  auto ms = static_cast<uint64_t>(NowMicros() / 1000);
  for (int i = 0; i < 6; ++i) b[i] = static_cast<unsigned char>(ms >> (8 * (5 - i)));
  b[6] = static_cast<unsigned char>((b[6] & 0x0f) | 0x70);  // version 7
  b[8] = static_cast<unsigned char>((b[8] & 0x1f) | 0x80);  // RFC 4122 variant; room to add
  Uint128 v = 0;
  for (unsigned char byte : b) v = (v << 8) | byte;
  return FormatUuid(v);
}

bool IsCanonicalUuid(std::string_view id) { return ParseUuid(id).has_value(); }

std::string UuidPlus(std::string_view id, uint64_t k) {
  auto v = ParseUuid(id);
  return v ? FormatUuid(*v + k) : std::string(id);
}

std::vector<std::string> UuidRun(std::string_view first, size_t n) {
  std::vector<std::string> out;
  out.reserve(n);
  auto v = ParseUuid(first);
  for (size_t i = 0; i < n; ++i) out.push_back(v ? FormatUuid(*v + i) : std::string(first));
  return out;
}

bool IsUuidRun(const std::vector<std::string_view>& ids) {
  if (ids.size() < 2) return false;
  auto first = ParseUuid(ids[0]);
  if (!first) return false;
  for (size_t i = 1; i < ids.size(); ++i) {
    auto v = ParseUuid(ids[i]);
    if (!v || *v != *first + i) return false;
  }
  return true;
}

std::optional<uint64_t> UuidOffset(std::string_view first, std::string_view id) {
  auto a = ParseUuid(first);
  auto b = ParseUuid(id);
  if (!a || !b || *b < *a || *b - *a >= (Uint128{1} << 62)) return std::nullopt;
  return static_cast<uint64_t>(*b - *a);
}

TimeMicros NowMicros() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
             .count() +
         FaultValue("SIDELOG_FAULT_CLOCK_FILE");  // test builds: a clock that jumps
}

std::string FormatTime(TimeMicros t) {
  int64_t secs = t >= 0 ? t / 1000000 : (t - 999999) / 1000000;
  int64_t micros = t - secs * 1000000;
  std::time_t tt = static_cast<std::time_t>(secs);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%06lldZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                static_cast<long long>(micros));
  return buf;
}

Result<TimeMicros> ParseTime(const std::string& s) {
  auto bad = [&] {
    return Status::Invalid("time \"" + s.substr(0, 64) +
                           "\" is not an RFC 3339 timestamp like 2026-11-26T10:00:00Z");
  };
  // YYYY-MM-DDTHH:MM:SS[.frac](Z|+HH:MM|-HH:MM)
  if (s.size() < 20) return bad();
  auto digits = [&](size_t pos, size_t n, int* out) {
    int v = 0;
    for (size_t i = pos; i < pos + n; ++i) {
      if (i >= s.size() || s[i] < '0' || s[i] > '9') return false;
      v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return true;
  };
  int year, mon, day, hour, min, sec;
  if (!digits(0, 4, &year) || s[4] != '-' || !digits(5, 2, &mon) || s[7] != '-' ||
      !digits(8, 2, &day) || (s[10] != 'T' && s[10] != 't' && s[10] != ' ') ||
      !digits(11, 2, &hour) || s[13] != ':' || !digits(14, 2, &min) || s[16] != ':' ||
      !digits(17, 2, &sec)) {
    return bad();
  }
  if (mon < 1 || mon > 12 || day < 1 || day > 31 || hour > 23 || min > 59 || sec > 60) {
    return bad();
  }
  size_t i = 19;
  int64_t micros = 0;
  if (i < s.size() && s[i] == '.') {
    ++i;
    size_t start = i;
    int64_t scale = 100000;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9') {
      micros += (s[i] - '0') * scale;
      scale /= 10;
      ++i;
    }
    if (i == start || i - start > 9) return bad();
  }
  int64_t offset = 0;
  if (i < s.size() && (s[i] == 'Z' || s[i] == 'z')) {
    ++i;
  } else if (i < s.size() && (s[i] == '+' || s[i] == '-')) {
    int oh, om;
    if (!digits(i + 1, 2, &oh) || i + 3 >= s.size() || s[i + 3] != ':' || !digits(i + 4, 2, &om)) {
      return bad();
    }
    offset =
        (static_cast<int64_t>(oh) * 3600 + static_cast<int64_t>(om) * 60) * (s[i] == '+' ? 1 : -1);
    i += 6;
  } else {
    return bad();
  }
  if (i != s.size()) return bad();
  std::tm tm{};
  tm.tm_year = year - 1900;
  tm.tm_mon = mon - 1;
  tm.tm_mday = day;
  tm.tm_hour = hour;
  tm.tm_min = min;
  tm.tm_sec = sec;
  int64_t secs = static_cast<int64_t>(timegm(&tm)) - offset;
  return secs * 1000000 + micros;
}

std::string ServiceSource(const std::string& ns, const std::string& service) {
  return "/namespaces/" + ns + "/services/" + service;
}

}  // namespace sidelog
