#include "sql_template.h"

#include <map>

namespace sidelog::consolidator {
namespace {

bool IsIdentStart(char c) {
  return std::isalpha(static_cast<unsigned char>(c)) || c == '_' ||
         static_cast<unsigned char>(c) >= 0x80;
}
bool IsIdentChar(char c) {
  return IsIdentStart(c) || std::isdigit(static_cast<unsigned char>(c)) || c == '$';
}
bool IsParamChar(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; }

std::string Trim(const std::string& s) {
  size_t b = s.find_first_not_of(" \t\r\n");
  if (b == std::string::npos) return "";
  size_t e = s.find_last_not_of(" \t\r\n");
  return s.substr(b, e - b + 1);
}

// One pass over the source: copies text into the current statement, rewriting parameters.
class Scanner {
 public:
  Scanner(const std::string& sql, Dialect dialect, int* error_line)
      : s_(sql), dialect_(dialect), error_line_(error_line) {}

  Result<std::vector<SqlStatement>> Run() {
    while (i_ < s_.size()) {
      if (auto st = Step(); !st.ok()) return st;
    }
    Finish(s_.size());
    return std::move(out_);
  }

 private:
  bool pg() const { return dialect_ == Dialect::kPostgres; }
  char At(size_t k) const { return k < s_.size() ? s_[k] : '\0'; }

  Status Error(const std::string& message, int line) const {
    if (error_line_) *error_line_ = line;
    return Status::Invalid(message);
  }

  // Copies s_[i_, end) into the statement, counting lines.
  void Copy(size_t end) {
    for (size_t k = i_; k < end; ++k) {
      if (s_[k] == '\n') ++line_;
    }
    cur_.text.append(s_, i_, end - i_);
    i_ = end;
  }

  // Marks the start of a real token (not whitespace or a comment).
  void Token() {
    if (!has_token_) {
      has_token_ = true;
      cur_.line = line_;
      original_start_ = i_;
    }
  }

  // Ends the current statement at s_[end] (exclusive).
  void Finish(size_t end) {
    if (has_token_) {
      cur_.original = Trim(s_.substr(original_start_, end - original_start_));
      out_.push_back(std::move(cur_));
    }
    cur_ = SqlStatement{};
    numbers_.clear();
    has_token_ = false;
  }

  Status Step() {
    const char c = s_[i_];
    if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
      Copy(i_ + 1);
      return Status::Ok();
    }
    if (c == '-' && At(i_ + 1) == '-') {
      size_t end = s_.find('\n', i_);
      Copy(end == std::string::npos ? s_.size() : end);
      return Status::Ok();
    }
    if (c == '/' && At(i_ + 1) == '*') return BlockComment();
    if (c == ';') {
      Finish(i_);
      ++i_;  // the semicolon is not part of the statement
      return Status::Ok();
    }
    Token();
    if (c == '\'') return Quoted('\'', '\'', false);
    if (c == '"') return Quoted('"', '"', false);
    if (!pg() && c == '`') return Quoted('`', '`', false);
    if (!pg() && c == '[') return Quoted('[', ']', false);
    if (c == ':') return Colon();
    if (c == '$') return Dollar();
    if (!pg() && (c == '?' || (c == '@' && IsIdentStart(At(i_ + 1))))) {
      return Error(std::string("\"") + c +
                       "\" starts a SQLite positional or native parameter; write :name instead",
                   line_);
    }
    if (IsIdentStart(c)) {
      size_t end = i_ + 1;
      while (end < s_.size() && IsIdentChar(s_[end])) ++end;
      bool escape_string = pg() && end == i_ + 1 && (c == 'E' || c == 'e') && At(end) == '\'';
      Copy(end);
      if (escape_string) return Quoted('\'', '\'', true);
      return Status::Ok();
    }
    if (std::isdigit(static_cast<unsigned char>(c))) {
      size_t end = i_ + 1;
      while (end < s_.size() && (IsParamChar(s_[end]) || s_[end] == '.')) ++end;
      Copy(end);
      return Status::Ok();
    }
    Copy(i_ + 1);
    return Status::Ok();
  }

  Status BlockComment() {
    int start_line = line_;
    int depth = 0;
    size_t k = i_;
    while (k < s_.size()) {
      if (s_[k] == '/' && At(k + 1) == '*') {
        ++depth;
        k += 2;
        if (!pg() && depth > 1) depth = 1;  // SQLite comments do not nest
      } else if (s_[k] == '*' && At(k + 1) == '/') {
        k += 2;
        if (--depth == 0) {
          Copy(k);
          return Status::Ok();
        }
      } else {
        ++k;
      }
    }
    return Error("unterminated /* comment", start_line);
  }

  // A literal or quoted identifier from s_[i_] == open to the matching close; a doubled close
  // is an escape, and with `backslash` (PostgreSQL E'...') so is a backslash.
  Status Quoted(char open, char close, bool backslash) {
    int start_line = line_;
    size_t k = i_ + 1;
    while (k < s_.size()) {
      if (backslash && s_[k] == '\\') {
        k += 2;
        continue;
      }
      if (s_[k] == close) {
        if (close != ']' && At(k + 1) == close) {
          k += 2;
          continue;
        }
        Copy(k + 1);
        return Status::Ok();
      }
      ++k;
    }
    const char* what = open == '\'' ? "string literal" : "quoted identifier";
    return Error(std::string("unterminated ") + what + " starting with " + open, start_line);
  }

  Status Colon() {
    char next = At(i_ + 1);
    if (next == ':' || next == '=') {  // a PostgreSQL cast, or := in a named argument
      Copy(i_ + 2);
      return Status::Ok();
    }
    if (!(std::isalpha(static_cast<unsigned char>(next)) || next == '_')) {
      Copy(i_ + 1);
      return Status::Ok();
    }
    size_t end = i_ + 1;
    while (end < s_.size() && IsParamChar(s_[end])) ++end;
    while (At(end) == '.' && IsParamChar(At(end + 1))) {
      ++end;
      while (end < s_.size() && IsParamChar(s_[end])) ++end;
    }
    std::string name = s_.substr(i_ + 1, end - i_ - 1);
    auto [it, inserted] = numbers_.emplace(name, static_cast<int>(numbers_.size()) + 1);
    if (inserted) cur_.parameters.push_back(name);
    // A mark next to an identifier would merge with it (PostgreSQL and SQLite identifiers may
    // hold '$': "a:x" must not become the identifier "a$1"), so it is set apart.
    if (!cur_.text.empty() && IsIdentChar(cur_.text.back())) cur_.text += ' ';
    cur_.text += pg() ? '$' : '?';
    cur_.text += std::to_string(it->second);
    if (IsIdentChar(At(end))) cur_.text += ' ';
    i_ = end;
    return Status::Ok();
  }

  Status Dollar() {
    char next = At(i_ + 1);
    if (!pg()) {
      if (IsIdentChar(next)) {
        return Error("\"$\" starts a SQLite native parameter; write :name instead", line_);
      }
      Copy(i_ + 1);
      return Status::Ok();
    }
    if (std::isdigit(static_cast<unsigned char>(next))) {
      return Error(
          "\"$" + std::string(1, next) + "\" is a positional parameter; write :name instead",
          line_);
    }
    // A dollar-quoted string: $tag$ ... $tag$ (the tag may be empty).
    size_t k = i_ + 1;
    if (IsIdentStart(At(k))) {
      while (k < s_.size() && IsIdentChar(s_[k]) && s_[k] != '$') ++k;
    }
    if (At(k) != '$') {
      Copy(i_ + 1);
      return Status::Ok();
    }
    std::string tag = s_.substr(i_, k - i_ + 1);
    size_t close = s_.find(tag, k + 1);
    if (close == std::string::npos) {
      return Error("unterminated dollar-quoted string starting with " + tag, line_);
    }
    Copy(close + tag.size());
    return Status::Ok();
  }

  const std::string& s_;
  const Dialect dialect_;
  int* error_line_;
  size_t i_ = 0;
  int line_ = 1;
  bool has_token_ = false;
  size_t original_start_ = 0;
  SqlStatement cur_;
  std::map<std::string, int> numbers_;
  std::vector<SqlStatement> out_;
};

}  // namespace

const char* DialectName(Dialect dialect) {
  return dialect == Dialect::kPostgres ? "PostgreSQL" : "SQLite";
}

Result<std::vector<SqlStatement>> ParseSql(const std::string& sql, Dialect dialect,
                                           int* error_line) {
  return Scanner(sql, dialect, error_line).Run();
}

}  // namespace sidelog::consolidator
