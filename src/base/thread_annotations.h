// Clang thread-safety annotations (-Wthread-safety): which mutex guards a
// member, which functions need it held. They expand to nothing on other
// compilers, so gcc builds are unaffected. Use them with stella::Mutex
// (src/base/mutex.h); std::mutex carries no capability.
#ifndef STELLA_SRC_BASE_THREAD_ANNOTATIONS_H_
#define STELLA_SRC_BASE_THREAD_ANNOTATIONS_H_

#if defined(__clang__)
#define STELLA_THREAD_ANNOTATION_(x) __attribute__((x))
#else
#define STELLA_THREAD_ANNOTATION_(x)
#endif

#define CAPABILITY(x) STELLA_THREAD_ANNOTATION_(capability(x))
#define SCOPED_CAPABILITY STELLA_THREAD_ANNOTATION_(scoped_lockable)
#define GUARDED_BY(x) STELLA_THREAD_ANNOTATION_(guarded_by(x))
#define PT_GUARDED_BY(x) STELLA_THREAD_ANNOTATION_(pt_guarded_by(x))
#define ACQUIRED_BEFORE(...) STELLA_THREAD_ANNOTATION_(acquired_before(__VA_ARGS__))
#define ACQUIRED_AFTER(...) STELLA_THREAD_ANNOTATION_(acquired_after(__VA_ARGS__))
#define REQUIRES(...) STELLA_THREAD_ANNOTATION_(requires_capability(__VA_ARGS__))
#define ACQUIRE(...) STELLA_THREAD_ANNOTATION_(acquire_capability(__VA_ARGS__))
#define RELEASE(...) STELLA_THREAD_ANNOTATION_(release_capability(__VA_ARGS__))
#define TRY_ACQUIRE(...) STELLA_THREAD_ANNOTATION_(try_acquire_capability(__VA_ARGS__))
#define EXCLUDES(...) STELLA_THREAD_ANNOTATION_(locks_excluded(__VA_ARGS__))
#define ASSERT_CAPABILITY(x) STELLA_THREAD_ANNOTATION_(assert_capability(x))
#define RETURN_CAPABILITY(x) STELLA_THREAD_ANNOTATION_(lock_returned(x))
#define NO_THREAD_SAFETY_ANALYSIS STELLA_THREAD_ANNOTATION_(no_thread_safety_analysis)

#endif  // STELLA_SRC_BASE_THREAD_ANNOTATIONS_H_
