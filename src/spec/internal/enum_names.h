// The YAML spelling of every StellaJob enum, indexed by the enum's value, so
// ToString, ParseEnum, the parser's "must be one of" messages and the
// validator's range check share one table.
//
// Thread safety: constant data.
#ifndef STELLA_SRC_SPEC_INTERNAL_ENUM_NAMES_H_
#define STELLA_SRC_SPEC_INTERNAL_ENUM_NAMES_H_

#include <cstddef>
#include <string>
#include <string_view>

#include "src/spec/stella_job.h"

namespace stella::spec::internal {

template <typename E>
struct EnumNames;

#define STELLA_SPEC_ENUM_NAMES_(E, ...)                                  \
  template <>                                                            \
  struct EnumNames<E> {                                                  \
    static constexpr const char* kNames[] = {__VA_ARGS__};               \
    static constexpr size_t kCount = sizeof(kNames) / sizeof(kNames[0]); \
  }

STELLA_SPEC_ENUM_NAMES_(OptimizerKind, "sgd", "adam", "adamw");
STELLA_SPEC_ENUM_NAMES_(SyncMode, "ddp", "stella");
STELLA_SPEC_ENUM_NAMES_(CompressorKind, "topk", "randomk", "threshold", "cacheline");
STELLA_SPEC_ENUM_NAMES_(ValuePrecision, "fp32", "fp16", "bf16");
STELLA_SPEC_ENUM_NAMES_(ModelTask, "classification", "language-model");
STELLA_SPEC_ENUM_NAMES_(DatasetFormat, "idx", "tokens", "npy");
STELLA_SPEC_ENUM_NAMES_(TolerationOperator, "Equal", "Exists");
STELLA_SPEC_ENUM_NAMES_(TolerationEffect, "", "NoSchedule", "PreferNoSchedule", "NoExecute");
STELLA_SPEC_ENUM_NAMES_(GatewayType, "LoadBalancer", "NodePort", "HostNetwork");
STELLA_SPEC_ENUM_NAMES_(RestartPolicy, "OnFailure", "Never");

#undef STELLA_SPEC_ENUM_NAMES_

template <typename E>
bool IsValidEnum(E v) {
  return static_cast<size_t>(v) < EnumNames<E>::kCount;
}

// "ddp, stella"; an empty spelling is shown as "".
template <typename E>
std::string AllowedNames() {
  std::string out;
  for (const char* name : EnumNames<E>::kNames) {
    if (!out.empty()) out += ", ";
    out += (*name == '\0') ? std::string("\"\"") : std::string(name);
  }
  return out;
}

}  // namespace stella::spec::internal

#endif  // STELLA_SRC_SPEC_INTERNAL_ENUM_NAMES_H_
