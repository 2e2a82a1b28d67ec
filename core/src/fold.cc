#include "sidelog/fold.h"

#define VALIJSON_USE_EXCEPTIONS 1
#include <valijson/adapters/nlohmann_json_adapter.hpp>
#include <valijson/schema.hpp>
#include <valijson/schema_parser.hpp>
#include <valijson/validation_results.hpp>
#include <valijson/validator.hpp>

#include <set>

#include "sidelog/names.h"
#include "sidelog/yaml.h"

namespace sidelog {

using Pointer = Json::json_pointer;

struct Rules::Op {
  enum class Kind { kMerge, kSet, kUnset, kIncrement, kAppend, kDelete };
  Kind kind = Kind::kMerge;
  Pointer path;           // into the state; root when empty
  std::string path_text;  // as declared, for messages
  bool has_from = false;
  Pointer from;  // into the event's data
  std::string from_text;
  bool has_value = false;
  Json value;
};

struct Rules::Schemas {
  std::map<std::string, std::unique_ptr<valijson::Schema>> by_type;
};

Rules::Rules() : schemas_(std::make_unique<Schemas>()) {}
Rules::~Rules() = default;

namespace {

Status FieldError(const std::string& field, const std::string& message) {
  ErrorContext ctx;
  ctx.rule = field;
  return Status::Invalid(field + ": " + message, std::move(ctx));
}

Status ParsePointer(const Json& j, const std::string& field, Pointer* out, std::string* text) {
  if (!j.is_string()) return FieldError(field, "must be a JSON pointer string like /items");
  *text = j.get<std::string>();
  try {
    *out = Pointer(*text);
  } catch (const Json::exception& e) {
    return FieldError(field, "\"" + *text +
                                 "\" is not an RFC 6901 JSON pointer (it must be "
                                 "empty or start with '/')");
  }
  return Status::Ok();
}

Status CheckKeys(const Json& obj, const std::string& field,
                 std::initializer_list<const char*> keys) {
  if (!obj.is_object()) return FieldError(field, "must be an object");
  for (const auto& [k, v] : obj.items()) {
    bool known = false;
    for (const char* key : keys) known = known || k == key;
    if (!known) {
      std::string list;
      for (const char* key : keys) {
        if (!list.empty()) list += ", ";
        list += key;
      }
      return FieldError(field + "/" + EscapePointerToken(k),
                        "unknown field \"" + k + "\" (expected one of: " + list + ")");
    }
  }
  return Status::Ok();
}

Result<Rules::Op> CompileOp(const Json& j, const std::string& field) {
  if (auto s = CheckKeys(j, field, {"op", "path", "from", "value"}); !s.ok()) return s;
  Rules::Op op;
  auto it = j.find("op");
  if (it == j.end() || !it->is_string()) {
    return FieldError(field + "/op",
                      "is required: one of merge, set, unset, increment, append, delete");
  }
  const std::string name = it->get<std::string>();
  using Kind = Rules::Op::Kind;
  static const std::map<std::string, Kind> kKinds = {
      {"merge", Kind::kMerge},         {"set", Kind::kSet},       {"unset", Kind::kUnset},
      {"increment", Kind::kIncrement}, {"append", Kind::kAppend}, {"delete", Kind::kDelete}};
  auto kind = kKinds.find(name);
  if (kind == kKinds.end()) {
    return FieldError(field + "/op", "\"" + name +
                                         "\" is not one of merge, set, unset, increment, append, "
                                         "delete");
  }
  op.kind = kind->second;
  if (auto p = j.find("path"); p != j.end()) {
    if (auto s = ParsePointer(*p, field + "/path", &op.path, &op.path_text); !s.ok()) return s;
  }
  if (auto f = j.find("from"); f != j.end()) {
    if (auto s = ParsePointer(*f, field + "/from", &op.from, &op.from_text); !s.ok()) return s;
    op.has_from = true;
  }
  if (auto v = j.find("value"); v != j.end()) {
    op.value = *v;
    op.has_value = true;
  }
  if (op.has_from && op.has_value) {
    return FieldError(field, "op " + name + " takes either \"from\" or \"value\", not both");
  }
  bool needs_path = op.kind == Kind::kSet || op.kind == Kind::kUnset ||
                    op.kind == Kind::kIncrement || op.kind == Kind::kAppend;
  if (needs_path && !j.contains("path")) {
    return FieldError(field + "/path", "is required for op " + name);
  }
  if ((op.kind == Kind::kSet || op.kind == Kind::kAppend) && !op.has_from && !op.has_value) {
    return FieldError(field, "op " + name +
                                 " needs \"from\" (a pointer into the event data) or "
                                 "\"value\"");
  }
  if ((op.kind == Kind::kUnset || op.kind == Kind::kDelete) && (op.has_from || op.has_value)) {
    return FieldError(field, "op " + name + " takes no \"from\" or \"value\"");
  }
  if (op.kind == Kind::kDelete && j.contains("path")) {
    return FieldError(field + "/path", "op delete takes no path: it deletes the entity");
  }
  if (op.kind == Kind::kIncrement && op.has_value && !op.value.is_number()) {
    return FieldError(field + "/value", "op increment needs a numeric value");
  }
  if (op.kind == Kind::kSet && op.path.empty() && op.has_value && !op.value.is_object()) {
    return FieldError(field + "/value", "setting the whole state needs an object value");
  }
  return op;
}

std::string Describe(const Json& j) {
  switch (j.type()) {
    case Json::value_t::null:
      return "null";
    case Json::value_t::boolean:
      return "a boolean";
    case Json::value_t::string:
      return "a string";
    case Json::value_t::array:
      return "an array";
    case Json::value_t::object:
      return "an object";
    case Json::value_t::discarded:
      return "nothing";
    default:
      return "a number";
  }
}

// Finds the parent container of `path` in `root`, creating missing objects on the way.
// Returns nullptr (and sets *why) when a step goes through a scalar.
Json* ParentFor(Json* root, const Pointer& path, bool create, std::string* why) {
  Json* cur = root;
  Pointer parent = path.parent_pointer();
  std::vector<std::string> tokens;
  for (Pointer p = parent; !p.empty(); p = p.parent_pointer()) tokens.push_back(p.back());
  std::string walked;
  for (auto it = tokens.rbegin(); it != tokens.rend(); ++it) {
    walked += "/" + EscapePointerToken(*it);
    if (cur->is_object()) {
      auto found = cur->find(*it);
      if (found == cur->end()) {
        if (!create) return nullptr;
        cur = &(*cur)[*it];
        *cur = Json::object();
      } else {
        cur = &*found;
      }
    } else if (cur->is_array()) {
      size_t idx = 0;
      try {
        idx = std::stoul(*it);
      } catch (...) {
        *why = walked + " is an array index but \"" + *it + "\" is not a number";
        return nullptr;
      }
      if (idx >= cur->size()) {
        *why = walked + " is past the end of an array of " + std::to_string(cur->size());
        return nullptr;
      }
      cur = &(*cur)[idx];
    } else {
      *why = walked + " is " + Describe(*cur) + ", not an object";
      return nullptr;
    }
  }
  if (!cur->is_object() && !cur->is_array()) {
    *why = (walked.empty() ? std::string("the state") : walked) + " is " + Describe(*cur) +
           ", not an object";
    return nullptr;
  }
  return cur;
}

// The slot at `path`, created as null when missing (objects only).
Json* SlotFor(Json* root, const Pointer& path, std::string* why) {
  if (path.empty()) return root;
  Json* parent = ParentFor(root, path, true, why);
  if (parent == nullptr) return nullptr;
  if (parent->is_array()) {
    const std::string& last = path.back();
    if (last == "-") {
      parent->push_back(nullptr);
      return &parent->back();
    }
    size_t idx = 0;
    try {
      idx = std::stoul(last);
    } catch (...) {
      *why = "\"" + last + "\" is not an array index";
      return nullptr;
    }
    if (idx >= parent->size()) {
      *why = "index " + last + " is past the end of an array of " + std::to_string(parent->size());
      return nullptr;
    }
    return &(*parent)[idx];
  }
  return &(*parent)[path.back()];
}

// Rewrites deprecated spellings in `spec` to the current ones and records each: a transition's
// `on` becomes `event`. Invalid when a transition has both. Shapes that do not fit are left for
// Compile to refuse.
Status Normalize(Json* spec, std::vector<Rules::Deprecation>* deprecations) {
  auto m = spec->find("stateMachine");
  if (m == spec->end() || !m->is_object()) return Status::Ok();
  auto transitions = m->find("transitions");
  if (transitions == m->end() || !transitions->is_array()) return Status::Ok();
  for (size_t i = 0; i < transitions->size(); ++i) {
    Json& t = (*transitions)[i];
    if (!t.is_object()) continue;
    auto on = t.find("on");
    if (on == t.end()) continue;
    const std::string field = "/stateMachine/transitions/" + std::to_string(i) + "/on";
    if (t.contains("event")) {
      return FieldError(field, "is the deprecated name of event: give only event");
    }
    Json value = std::move(*on);
    t.erase("on");
    t["event"] = std::move(value);
    deprecations->push_back(
        {field,
         "on is deprecated, write event: YAML 1.1 readers such as kubectl take a bare on for the "
         "boolean true"});
  }
  return Status::Ok();
}

}  // namespace

std::shared_ptr<const Rules> Rules::Default() {
  static const std::shared_ptr<const Rules> kDefault = [] {
    auto r = Compile(Json::object());
    return r.value();
  }();
  return kDefault;
}

Result<std::shared_ptr<const Rules>> Rules::Compile(const Json& entity) {
  auto rules = std::make_shared<Rules>();
  Json spec = entity.is_null() ? Json::object() : entity;
  if (auto s = CheckKeys(spec, "", {"reducers", "stateMachine", "schemas"}); !s.ok()) return s;
  if (auto s = Normalize(&spec, &rules->deprecations_); !s.ok()) return s;
  rules->spec_ = spec;

  if (auto r = spec.find("reducers"); r != spec.end() && !r->is_null()) {
    if (!r->is_object()) return FieldError("/reducers", "must be a map of event type to ops");
    for (const auto& [type, ops] : r->items()) {
      std::string field = "/reducers/" + EscapePointerToken(type);
      if (auto s = ValidateEventType(type); !s.ok()) return FieldError(field, s.message());
      if (!ops.is_array()) return FieldError(field, "must be a list of ops");
      std::vector<Op> compiled;
      for (size_t i = 0; i < ops.size(); ++i) {
        auto op = CompileOp(ops[i], field + "/" + std::to_string(i));
        if (!op.ok()) return op.status();
        compiled.push_back(std::move(op).value());
      }
      rules->reducers_[type] = std::move(compiled);
    }
  }

  if (auto m = spec.find("stateMachine"); m != spec.end() && !m->is_null()) {
    if (auto s = CheckKeys(*m, "/stateMachine", {"initial", "strict", "transitions"}); !s.ok()) {
      return s;
    }
    auto initial = m->find("initial");
    if (initial == m->end() || !initial->is_string() || initial->get<std::string>().empty()) {
      return FieldError("/stateMachine/initial", "is required: the state of a new entity");
    }
    rules->has_state_machine_ = true;
    rules->initial_ = initial->get<std::string>();
    if (auto strict = m->find("strict"); strict != m->end()) {
      if (!strict->is_boolean()) return FieldError("/stateMachine/strict", "must be true or false");
      rules->strict_ = strict->get<bool>();
    }
    auto transitions = m->find("transitions");
    if (transitions == m->end() || !transitions->is_array() || transitions->empty()) {
      return FieldError("/stateMachine/transitions",
                        "is required: a non-empty list of {event, from, to}");
    }
    std::set<std::pair<std::string, std::string>> seen;
    for (size_t i = 0; i < transitions->size(); ++i) {
      const Json& t = (*transitions)[i];
      std::string field = "/stateMachine/transitions/" + std::to_string(i);
      if (auto s = CheckKeys(t, field, {"event", "from", "to"}); !s.ok()) return s;
      Transition tr;
      auto event = t.find("event");
      if (event == t.end() || !event->is_string()) {
        return FieldError(field + "/event", "is required: the event type that triggers it");
      }
      tr.event = event->get<std::string>();
      if (auto s = ValidateEventType(tr.event); !s.ok()) {
        return FieldError(field + "/event", s.message());
      }
      auto from = t.find("from");
      if (from == t.end()) return FieldError(field + "/from", "is required: a list of states");
      if (from->is_string()) {
        tr.from.push_back(from->get<std::string>());
      } else if (from->is_array() && !from->empty()) {
        for (const auto& f : *from) {
          if (!f.is_string() || f.get<std::string>().empty()) {
            return FieldError(field + "/from", "must list non-empty state names");
          }
          tr.from.push_back(f.get<std::string>());
        }
      } else {
        return FieldError(field + "/from", "must be a non-empty list of states");
      }
      auto to = t.find("to");
      if (to == t.end() || !to->is_string() || to->get<std::string>().empty()) {
        return FieldError(field + "/to", "is required: the state after the event");
      }
      tr.to = to->get<std::string>();
      for (const auto& f : tr.from) {
        if (!seen.insert({tr.event, f}).second) {
          return FieldError(field, "a second transition on " + tr.event + " from state \"" + f +
                                       "\" makes the state machine ambiguous");
        }
      }
      rules->transitions_[tr.event].push_back(std::move(tr));
    }
  }

  if (auto sc = spec.find("schemas"); sc != spec.end() && !sc->is_null()) {
    if (!sc->is_object()) return FieldError("/schemas", "must be a map of event type to schema");
    for (const auto& [type, schema] : sc->items()) {
      std::string field = "/schemas/" + EscapePointerToken(type);
      if (auto s = ValidateEventType(type); !s.ok()) return FieldError(field, s.message());
      if (!schema.is_object()) return FieldError(field, "must be a JSON Schema object");
      auto compiled = std::make_unique<valijson::Schema>();
      try {
        valijson::SchemaParser parser;
        valijson::adapters::NlohmannJsonAdapter adapter(schema);
        parser.populateSchema(adapter, *compiled);
      } catch (const std::exception& e) {
        return FieldError(field, std::string("is not a valid JSON Schema: ") + e.what());
      }
      rules->schemas_->by_type[type] = std::move(compiled);
    }
  }

  // The hash covers the canonical spec (deprecated spellings replaced) and the fold semantics'
  // version.
  rules->hash_ = CommitId("rules-v1", spec.dump(), {});
  return std::shared_ptr<const Rules>(std::move(rules));
}

EntityState Rules::Initial() const {
  EntityState s;
  s.status = initial_;
  return s;
}

Status Rules::ValidateSchema(const std::string& type, const Json& data) const {
  auto it = schemas_->by_type.find(type);
  if (it == schemas_->by_type.end()) return Status::Ok();
  valijson::Validator validator;
  valijson::ValidationResults results;
  valijson::adapters::NlohmannJsonAdapter target(data);
  if (validator.validate(*it->second, target, &results)) return Status::Ok();
  std::string detail;
  valijson::ValidationResults::Error error;
  int shown = 0;
  while (results.popError(error) && shown < 3) {
    std::string where;
    for (const auto& c : error.context) where += c;
    if (!detail.empty()) detail += "; ";
    detail += (where.empty() ? "<root>" : where) + ": " + error.description;
    ++shown;
  }
  ErrorContext ctx;
  ctx.rule = "schemas." + type;
  return Status::Rejected("event data does not match the JSON Schema of " + type + ": " + detail,
                          std::move(ctx));
}

Status Rules::Apply(EntityState* entity, const std::string& type, const Json& data,
                    Mode mode) const {
  if (has_state_machine_) {
    auto it = transitions_.find(type);
    if (it == transitions_.end()) {
      if (strict_ && mode == Mode::kAppend) {
        ErrorContext ctx;
        ctx.rule = "stateMachine.strict";
        return Status::Rejected(
            "event type " + type + " is named in no transition of the strict state machine",
            std::move(ctx));
      }
    } else {
      const Transition* match = nullptr;
      for (const auto& t : it->second) {
        for (const auto& f : t.from) {
          if (f == entity->status) match = &t;
        }
      }
      if (match != nullptr) {
        entity->status = match->to;
      } else if (mode == Mode::kAppend) {
        std::string allowed;
        for (const auto& t : it->second) {
          for (const auto& f : t.from) allowed += (allowed.empty() ? "" : ", ") + f;
        }
        ErrorContext ctx;
        ctx.rule = "stateMachine.transitions";
        return Status::Rejected("event type " + type + " is not allowed in state \"" +
                                    entity->status + "\" (allowed from: " + allowed + ")",
                                std::move(ctx));
      }
    }
  }
  auto ops = reducers_.find(type);
  if (ops == reducers_.end()) {
    static const Op kMergeAll;
    return ApplyOp(kMergeAll, entity, type, data, mode);
  }
  for (const auto& op : ops->second) {
    if (auto s = ApplyOp(op, entity, type, data, mode); !s.ok()) return s;
  }
  return Status::Ok();
}

Status Rules::ApplyOp(const Op& op, EntityState* entity, const std::string& type, const Json& data,
                      Mode mode) const {
  auto reject = [&](const std::string& why) {
    if (mode == Mode::kReplay) return Status::Ok();  // history folds; the op is skipped
    ErrorContext ctx;
    ctx.rule = "reducers." + type;
    return Status::Rejected("reducer of " + type + " cannot apply: " + why, std::move(ctx));
  };
  // The operand: `value`, or the data at `from`, or the whole data.
  const Json* operand = &data;
  if (op.has_value) {
    operand = &op.value;
  } else if (op.has_from) {
    if (!op.from.empty()) {
      if (!data.is_object() && !data.is_array()) {
        return reject("event data is " + Describe(data) + ", so it has no " + op.from_text);
      }
      try {
        operand = &data.at(op.from);
      } catch (const Json::exception&) {
        return reject("event data has no " + op.from_text);
      }
    }
  }
  std::string why;
  switch (op.kind) {
    case Op::Kind::kDelete:
      entity->deleted = true;
      return Status::Ok();
    case Op::Kind::kMerge: {
      if (operand->is_null()) return Status::Ok();
      if (!operand->is_object()) {
        return reject("merging (RFC 7386) needs an object, the event data is " +
                      Describe(*operand));
      }
      Json* slot = SlotFor(&entity->state, op.path, &why);
      if (slot == nullptr) return reject(why);
      if (!slot->is_object()) *slot = Json::object();
      slot->merge_patch(*operand);
      return Status::Ok();
    }
    case Op::Kind::kSet: {
      if (op.path.empty()) {
        if (!operand->is_object()) return reject("the whole state can only be set to an object");
        entity->state = *operand;
        return Status::Ok();
      }
      Json* slot = SlotFor(&entity->state, op.path, &why);
      if (slot == nullptr) return reject(why);
      *slot = *operand;
      return Status::Ok();
    }
    case Op::Kind::kUnset: {
      if (op.path.empty()) {
        entity->state = Json::object();
        return Status::Ok();
      }
      Json* parent = ParentFor(&entity->state, op.path, false, &why);
      if (parent == nullptr) return Status::Ok();  // nothing there to unset
      if (parent->is_object()) {
        parent->erase(op.path.back());
      } else {
        try {
          size_t idx = std::stoul(op.path.back());
          if (idx < parent->size()) parent->erase(idx);
        } catch (...) {
        }
      }
      return Status::Ok();
    }
    case Op::Kind::kIncrement: {
      const Json one = 1;
      const Json& amount = (op.has_value || op.has_from) ? *operand : one;
      if (!amount.is_number()) {
        return reject("increment needs a number, " + (op.has_from ? op.from_text : "the value") +
                      " is " + Describe(amount));
      }
      Json* slot = SlotFor(&entity->state, op.path, &why);
      if (slot == nullptr) return reject(why);
      if (slot->is_null()) *slot = 0;
      if (!slot->is_number()) {
        return reject(op.path_text + " is " + Describe(*slot) + ", so it cannot be incremented");
      }
      if (slot->is_number_integer() && amount.is_number_integer()) {
        *slot = slot->get<int64_t>() + amount.get<int64_t>();
      } else {
        *slot = slot->get<double>() + amount.get<double>();
      }
      return Status::Ok();
    }
    case Op::Kind::kAppend: {
      Json* slot = SlotFor(&entity->state, op.path, &why);
      if (slot == nullptr) return reject(why);
      if (slot->is_null()) *slot = Json::array();
      if (!slot->is_array()) {
        return reject(op.path_text + " is " + Describe(*slot) + ", so nothing can be appended");
      }
      slot->push_back(*operand);
      return Status::Ok();
    }
  }
  return Status::Ok();
}

}  // namespace sidelog
