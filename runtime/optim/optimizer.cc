#include "runtime/optim/optimizer.h"

#include <cmath>
#include <cstdio>
#include <utility>

// Kernels are compiled twice, for AVX2 and for the baseline ISA, and the
// loader picks one per CPU (GCC/Clang target_clones, x86-64 ELF only). Both
// clones run the same IEEE operations (AVX2 does not imply FMA, and ISO C++
// mode disables contraction), so they give bit-identical results.
#if defined(__x86_64__) && defined(__ELF__) && (defined(__GNUC__) || defined(__clang__)) && \
    !defined(STELLA_OPTIM_NO_MULTIVERSION)
#define STELLA_OPTIM_MULTIVERSION __attribute__((target_clones("avx2", "default")))
#else
#define STELLA_OPTIM_MULTIVERSION
#endif
// The element loops are inlined into each clone so that they are vectorized
// for that clone's ISA.
#define STELLA_OPTIM_INLINE inline __attribute__((always_inline))

namespace stella {
namespace optim {
namespace {

// Float coefficients of one step, rounded once from the double
// hyperparameters, as ATen does when it converts a Scalar to float.
struct Coefficients {
  // SGD.
  float neg_lr = 0;        // -lr
  float weight_decay = 0;  // L2 term (SGD, Adam)
  float momentum = 0;
  // Adam / AdamW.
  float beta1 = 0;
  float one_minus_beta1 = 0;
  float beta2 = 0;
  float one_minus_beta2 = 0;
  float bias_correction2_sqrt = 0;  // sqrt(1 - beta2^t)
  float eps = 0;
  float neg_step_size = 0;  // -lr / (1 - beta1^t)
  float decay = 0;          // AdamW: 1 - lr * wd
};

// Pointers to one tensor's parameter and state buffers; null when a buffer is
// not kept.
struct Buffers {
  float* param;
  float* first;
  float* second;
};

STELLA_OPTIM_INLINE float* Offset(float* p, size_t i) { return p != nullptr ? p + i : nullptr; }

// One SGD update of len contiguous elements, in torch::optim::SGD's order:
// d = g + wd * p; buf = first ? d : buf * momentum + d;
// d = nesterov ? d + momentum * buf : buf; p = p + (-lr) * d.
template <bool kWeightDecay, bool kMomentum, bool kNesterov, bool kFirst>
struct SgdOp {
  static STELLA_OPTIM_INLINE void Apply(float* __restrict p, float* __restrict buf, float* __restrict /*unused*/,
                                        const float* __restrict g, size_t len, const Coefficients& c) {
    for (size_t i = 0; i < len; ++i) {
      float d = g[i];
      if (kWeightDecay) d = d + c.weight_decay * p[i];
      if (kMomentum) {
        float b = kFirst ? d : buf[i] * c.momentum + d;
        buf[i] = b;
        d = kNesterov ? d + c.momentum * b : b;
      }
      p[i] = p[i] + c.neg_lr * d;
    }
  }
};

// One Adam/AdamW update of len contiguous elements, in torch::optim::Adam's
// (and AdamW's) order:
// AdamW: p = p * (1 - lr * wd); Adam: g = g + wd * p;
// m = m * b1 + (1 - b1) * g; v = v * b2 + (1 - b2) * g * g;
// denom = sqrt(v) / sqrt(1 - b2^t) + eps; p = p + (-lr / (1 - b1^t)) * m / denom.
template <bool kL2, bool kDecoupled>
struct AdamOp {
  static STELLA_OPTIM_INLINE void Apply(float* __restrict p, float* __restrict m, float* __restrict v,
                                        const float* __restrict g, size_t len, const Coefficients& c) {
    for (size_t i = 0; i < len; ++i) {
      float pi = p[i];
      if (kDecoupled) pi = pi * c.decay;
      float gi = g[i];
      if (kL2) gi = gi + c.weight_decay * pi;
      float mi = m[i] * c.beta1 + c.one_minus_beta1 * gi;
      float vi = v[i] * c.beta2 + c.one_minus_beta2 * gi * gi;
      m[i] = mi;
      v[i] = vi;
      float denom = std::sqrt(vi) / c.bias_correction2_sqrt + c.eps;
      p[i] = pi + c.neg_step_size * mi / denom;
    }
  }
};

// Dense elements [begin, end).
template <class Op>
STELLA_OPTIM_INLINE void DenseRange(const Buffers& t, const float* grad, size_t begin, size_t end,
                                    const Coefficients& c) {
  Op::Apply(t.param + begin, Offset(t.first, begin), Offset(t.second, begin), grad + begin, end - begin, c);
}

// Sparse indices [kbegin, kend) of a validated block list. Only the last
// block of the tensor can be short, and it can only be the last index, so
// the values of index k start at k * block_size.
template <class Op>
STELLA_OPTIM_INLINE void SparseRange(const Buffers& t, size_t n, const uint32_t* indices, size_t kbegin, size_t kend,
                                     uint32_t block_size, const float* values, const Coefficients& c) {
  if (block_size == 1) {
    // Scattered elements of a large tensor miss the cache; ask for the lines
    // of an element a few indices ahead while this one computes.
    constexpr size_t kPrefetchAhead = 16;
    for (size_t k = kbegin; k < kend; ++k) {
      if (k + kPrefetchAhead < kend) {
        const size_t ahead = indices[k + kPrefetchAhead];
        __builtin_prefetch(t.param + ahead, 1);
        if (t.first != nullptr) __builtin_prefetch(t.first + ahead, 1);
        if (t.second != nullptr) __builtin_prefetch(t.second + ahead, 1);
      }
      size_t i = indices[k];
      Op::Apply(t.param + i, Offset(t.first, i), Offset(t.second, i), values + k, 1, c);
    }
  } else if (block_size == 16) {
    // Fixed-length body: the compiler unrolls it into whole vectors.
    constexpr size_t kBlock = 16;
    for (size_t k = kbegin; k < kend; ++k) {
      size_t start = static_cast<size_t>(indices[k]) * kBlock;
      if (start + kBlock <= n) {
        Op::Apply(t.param + start, Offset(t.first, start), Offset(t.second, start), values + k * kBlock, kBlock, c);
      } else {
        Op::Apply(t.param + start, Offset(t.first, start), Offset(t.second, start), values + k * kBlock, n - start, c);
      }
    }
  } else {
    for (size_t k = kbegin; k < kend; ++k) {
      size_t start = static_cast<size_t>(indices[k]) * block_size;
      size_t len = start + block_size <= n ? block_size : n - start;
      Op::Apply(t.param + start, Offset(t.first, start), Offset(t.second, start), values + k * block_size, len, c);
    }
  }
}

// Which SgdOp instantiation a step needs, as a 4-bit code.
struct SgdFlags {
  bool weight_decay, momentum, nesterov, first;
  int Code() const { return (weight_decay ? 1 : 0) | (momentum ? 2 : 0) | (nesterov ? 4 : 0) | (first ? 8 : 0); }
};

#define STELLA_SGD_OP(code) SgdOp<((code)&1) != 0, ((code)&2) != 0, ((code)&4) != 0, ((code)&8) != 0>
#define STELLA_SGD_SWITCH(code, CALL) \
  switch (code) {                     \
    case 0: CALL(0); break;           \
    case 1: CALL(1); break;           \
    case 2: CALL(2); break;           \
    case 3: CALL(3); break;           \
    case 4: CALL(4); break;           \
    case 5: CALL(5); break;           \
    case 6: CALL(6); break;           \
    case 7: CALL(7); break;           \
    case 8: CALL(8); break;           \
    case 9: CALL(9); break;           \
    case 10: CALL(10); break;         \
    case 11: CALL(11); break;         \
    case 12: CALL(12); break;         \
    case 13: CALL(13); break;         \
    case 14: CALL(14); break;         \
    default: CALL(15); break;         \
  }

STELLA_OPTIM_MULTIVERSION void SgdDenseKernel(const Buffers& t, const float* grad, size_t begin, size_t end, int code,
                                              const Coefficients& c){
#define STELLA_CALL(k) DenseRange<STELLA_SGD_OP(k)>(t, grad, begin, end, c)
    STELLA_SGD_SWITCH(code, STELLA_CALL)
#undef STELLA_CALL
}

STELLA_OPTIM_MULTIVERSION
    void SgdSparseKernel(const Buffers& t, size_t n, const uint32_t* indices, size_t kbegin, size_t kend,
                         uint32_t block_size, const float* values, int code, const Coefficients& c){
#define STELLA_CALL(k) SparseRange<STELLA_SGD_OP(k)>(t, n, indices, kbegin, kend, block_size, values, c)
        STELLA_SGD_SWITCH(code, STELLA_CALL)
#undef STELLA_CALL
    }

STELLA_OPTIM_MULTIVERSION void AdamDenseKernel(const Buffers& t, const float* grad, size_t begin, size_t end, bool l2,
                                               bool decoupled, const Coefficients& c) {
  if (decoupled) {
    DenseRange<AdamOp<false, true>>(t, grad, begin, end, c);
  } else if (l2) {
    DenseRange<AdamOp<true, false>>(t, grad, begin, end, c);
  } else {
    DenseRange<AdamOp<false, false>>(t, grad, begin, end, c);
  }
}

STELLA_OPTIM_MULTIVERSION void AdamSparseKernel(const Buffers& t, size_t n, const uint32_t* indices, size_t kbegin,
                                                size_t kend, uint32_t block_size, const float* values, bool l2,
                                                bool decoupled, const Coefficients& c) {
  if (decoupled) {
    SparseRange<AdamOp<false, true>>(t, n, indices, kbegin, kend, block_size, values, c);
  } else if (l2) {
    SparseRange<AdamOp<true, false>>(t, n, indices, kbegin, kend, block_size, values, c);
  } else {
    SparseRange<AdamOp<false, false>>(t, n, indices, kbegin, kend, block_size, values, c);
  }
}

std::string FormatDouble(double v) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%g", v);
  return buf;
}

Status OutOfRange(const char* field, const char* expected, double got) {
  return InvalidArgumentError(std::string("optimizer.") + field + " must be " + expected + ", got " +
                              FormatDouble(got));
}

StatusOr<OptimizerKind> ParseKind(const std::string& name) {
  if (name == "sgd") return OptimizerKind::kSgd;
  if (name == "adam") return OptimizerKind::kAdam;
  if (name == "adamw") return OptimizerKind::kAdamW;
  return InvalidArgumentError("optimizer.name must be one of sgd, adam, adamw, got \"" + name + "\"");
}

Status ValidateLearningRate(double lr) {
  if (!(lr > 0) || !std::isfinite(lr)) return OutOfRange("learningRate", "> 0 and finite", lr);
  return Status::Ok();
}

}  // namespace

const char* OptimizerKindName(OptimizerKind kind) {
  switch (kind) {
    case OptimizerKind::kSgd: return "sgd";
    case OptimizerKind::kAdam: return "adam";
    case OptimizerKind::kAdamW: return "adamw";
  }
  return "unknown";
}

Status ValidateOptimizerOptions(const OptimizerOptions& o) {
  STELLA_ASSIGN_OR_RETURN(OptimizerKind kind, ParseKind(o.name));
  STELLA_RETURN_IF_ERROR(ValidateLearningRate(o.lr));
  if (!(o.weight_decay >= 0) || !std::isfinite(o.weight_decay)) {
    return OutOfRange("weightDecay", ">= 0 and finite", o.weight_decay);
  }
  if (kind == OptimizerKind::kSgd) {
    if (!(o.momentum >= 0 && o.momentum < 1)) return OutOfRange("momentum", "in [0, 1)", o.momentum);
    if (o.nesterov && o.momentum == 0) {
      return InvalidArgumentError("optimizer.nesterov needs optimizer.momentum > 0, got 0");
    }
    return Status::Ok();
  }
  // Adam and AdamW have no momentum knob; reject it rather than ignore it.
  if (o.momentum != 0) {
    return InvalidArgumentError("optimizer.momentum applies only to sgd, got " + FormatDouble(o.momentum) + " with " +
                                o.name);
  }
  if (o.nesterov) {
    return InvalidArgumentError("optimizer.nesterov applies only to sgd, got true with " + o.name);
  }
  if (!(o.beta1 >= 0 && o.beta1 < 1)) return OutOfRange("beta1", "in [0, 1)", o.beta1);
  if (!(o.beta2 >= 0 && o.beta2 < 1)) return OutOfRange("beta2", "in [0, 1)", o.beta2);
  if (!(o.eps >= 0) || !std::isfinite(o.eps)) return OutOfRange("eps", ">= 0 and finite", o.eps);
  return Status::Ok();
}

StatusOr<std::unique_ptr<TensorOptimizer>> TensorOptimizer::Create(const OptimizerOptions& options, size_t n) {
  STELLA_RETURN_IF_ERROR(ValidateOptimizerOptions(options));
  STELLA_ASSIGN_OR_RETURN(OptimizerKind kind, ParseKind(options.name));
  return std::unique_ptr<TensorOptimizer>(new TensorOptimizer(options, kind, n));
}

TensorOptimizer::TensorOptimizer(const OptimizerOptions& options, OptimizerKind kind, size_t n)
    : options_(options), kind_(kind), n_(n) {
  if (kind_ == OptimizerKind::kSgd) {
    if (options_.momentum != 0) first_moment_.assign(n_, 0.0f);
  } else {
    first_moment_.assign(n_, 0.0f);
    second_moment_.assign(n_, 0.0f);
  }
}

void TensorOptimizer::StepDense(float* param, const float* grad, ThreadPool* pool) {
  STELLA_CHECK(n_ == 0 || (param != nullptr && grad != nullptr));
  Run(/*sparse=*/false, param, grad, nullptr, 0, 0, pool);
}

Status TensorOptimizer::StepSparse(float* param, const uint32_t* indices, size_t num_indices, uint32_t block_size,
                                   const float* values, ThreadPool* pool) {
  if (block_size == 0) {
    return InvalidArgumentError("sparse gradient block_size must be >= 1, got 0");
  }
  // Validate the whole list before touching anything, so that a bad message
  // leaves the tensor and its state as they were.
  const size_t num_blocks = n_ / block_size + (n_ % block_size != 0 ? 1 : 0);
  for (size_t k = 0; k < num_indices; ++k) {
    if (indices[k] >= num_blocks) {
      return InvalidArgumentError("sparse gradient index " + std::to_string(indices[k]) + " at position " +
                                  std::to_string(k) + " is out of range: " + std::to_string(n_) +
                                  " elements in blocks of " + std::to_string(block_size) + " make " +
                                  std::to_string(num_blocks) + " blocks");
    }
    if (k > 0 && indices[k] <= indices[k - 1]) {
      return InvalidArgumentError("sparse gradient indices must be strictly ascending, got " +
                                  std::to_string(indices[k]) + " at position " + std::to_string(k) + " after " +
                                  std::to_string(indices[k - 1]));
    }
  }
  STELLA_CHECK(num_indices == 0 || (param != nullptr && values != nullptr));
  Run(/*sparse=*/true, param, values, indices, num_indices, block_size, pool);
  return Status::Ok();
}

void TensorOptimizer::Run(bool sparse, float* param, const float* grad, const uint32_t* indices, size_t num_indices,
                          uint32_t block_size, ThreadPool* pool) {
  const int64_t t = step_ + 1;
  const OptimizerOptions& o = options_;
  Coefficients c;
  // Each coefficient is computed in double and rounded once, where ATen
  // rounds the corresponding Scalar.
  c.weight_decay = static_cast<float>(o.weight_decay);
  c.neg_lr = static_cast<float>(-1 * o.lr);
  c.momentum = static_cast<float>(o.momentum);
  int sgd_code = 0;
  bool l2 = false;
  bool decoupled = false;
  if (kind_ == OptimizerKind::kSgd) {
    sgd_code = SgdFlags{o.weight_decay != 0, o.momentum != 0, o.nesterov, step_ == 0}.Code();
  } else {
    const double bias_correction1 = 1 - std::pow(o.beta1, t);
    const double bias_correction2 = 1 - std::pow(o.beta2, t);
    c.beta1 = static_cast<float>(o.beta1);
    c.one_minus_beta1 = static_cast<float>(1 - o.beta1);
    c.beta2 = static_cast<float>(o.beta2);
    c.one_minus_beta2 = static_cast<float>(1 - o.beta2);
    c.bias_correction2_sqrt = static_cast<float>(std::sqrt(bias_correction2));
    c.eps = static_cast<float>(o.eps);
    c.neg_step_size = static_cast<float>(-(o.lr / bias_correction1));
    decoupled = kind_ == OptimizerKind::kAdamW && o.weight_decay != 0;
    l2 = kind_ == OptimizerKind::kAdam && o.weight_decay != 0;
    c.decay = static_cast<float>(1 - o.lr * o.weight_decay);
  }
  const Buffers buffers{param, first_moment_.empty() ? nullptr : first_moment_.data(),
                        second_moment_.empty() ? nullptr : second_moment_.data()};
  const bool sgd = kind_ == OptimizerKind::kSgd;
  const bool threaded = pool != nullptr && pool->num_threads() > 1;

  if (!sparse) {
    auto body = [&](size_t begin, size_t end) {
      if (sgd) {
        SgdDenseKernel(buffers, grad, begin, end, sgd_code, c);
      } else {
        AdamDenseKernel(buffers, grad, begin, end, l2, decoupled, c);
      }
    };
    if (threaded && n_ >= kParallelThreshold) {
      pool->ParallelFor(n_, kParallelGrain, body);
    } else if (n_ > 0) {
      body(0, n_);
    }
  } else {
    auto body = [&](size_t kbegin, size_t kend) {
      if (sgd) {
        SgdSparseKernel(buffers, n_, indices, kbegin, kend, block_size, grad, sgd_code, c);
      } else {
        AdamSparseKernel(buffers, n_, indices, kbegin, kend, block_size, grad, l2, decoupled, c);
      }
    };
    // Every index but the last covers block_size elements.
    const size_t covered = num_indices * static_cast<size_t>(block_size);
    if (threaded && covered >= kParallelThreshold) {
      const size_t grain = kParallelGrain / block_size > 0 ? kParallelGrain / block_size : 1;
      pool->ParallelFor(num_indices, grain, body);
    } else if (num_indices > 0) {
      body(0, num_indices);
    }
  }
  step_ = t;
}

Status TensorOptimizer::SetLearningRate(double lr) {
  STELLA_RETURN_IF_ERROR(ValidateLearningRate(lr));
  options_.lr = lr;
  return Status::Ok();
}

OptimizerState TensorOptimizer::SaveState() const {
  OptimizerState state;
  state.step = step_;
  state.first_moment = first_moment_;
  state.second_moment = second_moment_;
  return state;
}

Status TensorOptimizer::LoadState(OptimizerState state) {
  if (state.step < 0) {
    return InvalidArgumentError("optimizer state step must be >= 0, got " + std::to_string(state.step));
  }
  auto check = [&](const char* what, const std::vector<float>& got, const std::vector<float>& want) -> Status {
    if (got.size() != want.size()) {
      return InvalidArgumentError(std::string("optimizer state ") + what + " of a " + OptimizerKindName(kind_) +
                                  " tensor of " + std::to_string(n_) + " elements must hold " +
                                  std::to_string(want.size()) + " floats, got " + std::to_string(got.size()));
    }
    return Status::Ok();
  };
  STELLA_RETURN_IF_ERROR(check("first_moment", state.first_moment, first_moment_));
  STELLA_RETURN_IF_ERROR(check("second_moment", state.second_moment, second_moment_));
  step_ = state.step;
  first_moment_ = std::move(state.first_moment);
  second_moment_ = std::move(state.second_moment);
  return Status::Ok();
}

}  // namespace optim
}  // namespace stella
