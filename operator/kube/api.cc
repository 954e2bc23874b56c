#include "operator/kube/api.h"

namespace stella::kube {

StatusOr<Response> CheckResponse(StatusOr<Response> r, const std::string& context, std::initializer_list<int> accept) {
  if (!r.ok()) return r.status().WithContext(context);
  if (IsSuccess(*r)) return r;
  for (int code : accept) {
    if (r->code == code) return r;
  }
  if (r->code == 409) return AbortedError(context + ": conflict, re-reading");
  return ResponseStatus(*r, context);
}

}  // namespace stella::kube
