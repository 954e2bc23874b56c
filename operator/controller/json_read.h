// Type-tolerant reads of Kubernetes objects. What an API server returns is
// written by others (kubelets, users with status access, older operators),
// and json::value() throws on a member of an unexpected type -- an exception
// no reconcile catches. Here a member of the wrong type reads as absent.
//
// Thread safety: pure functions.
#ifndef STELLA_OPERATOR_CONTROLLER_JSON_READ_H_
#define STELLA_OPERATOR_CONTROLLER_JSON_READ_H_

#include <initializer_list>
#include <string>

#include <nlohmann/json.hpp>

namespace stella::op::json_read {

// The member at `path`, nullptr when a step is missing or not an object.
inline const nlohmann::json* At(const nlohmann::json& j, std::initializer_list<const char*> path) {
  const nlohmann::json* cur = &j;
  for (const char* key : path) {
    if (!cur->is_object()) return nullptr;
    const auto it = cur->find(key);
    if (it == cur->end()) return nullptr;
    cur = &*it;
  }
  return cur;
}

// The string at `path`, or `fallback`.
inline std::string StringAt(const nlohmann::json& j, std::initializer_list<const char*> path,
                            const std::string& fallback = "") {
  const nlohmann::json* v = At(j, path);
  return v && v->is_string() ? v->get<std::string>() : fallback;
}

inline std::string Str(const nlohmann::json& j, const char* key) { return StringAt(j, {key}); }

// The array at `path`, or an empty one.
inline const nlohmann::json& ArrayAt(const nlohmann::json& j, std::initializer_list<const char*> path) {
  static const nlohmann::json kEmpty = nlohmann::json::array();  // immutable
  const nlohmann::json* v = At(j, path);
  return v && v->is_array() ? *v : kEmpty;
}

}  // namespace stella::op::json_read

#endif  // STELLA_OPERATOR_CONTROLLER_JSON_READ_H_
