// Clang's thread-safety analysis attributes (https://clang.llvm.org/docs/ThreadSafetyAnalysis.html),
// spelled as macros so that other compilers see nothing. A clang build with -Wthread-safety
// (KVSTASH_THREAD_SAFETY=ON, docs/ARCHITECTURE.md §7) turns a broken lock rule into a compile error:
// reading a GUARDED_BY member without its mutex, calling a REQUIRES function unlocked, or calling an
// EXCLUDES function with the mutex held.
//
// Use them with the annotated types of common/mutex.h; std::mutex itself carries no annotations.
// Abseil (included by gRPC) defines some of the same names with the same attributes; each macro is
// defined here only where it is not defined yet, so either header may come first.
#pragma once

#if defined(__clang__)
#define KVSTASH_THREAD_ANNOTATION(x) __attribute__((x))
#else
#define KVSTASH_THREAD_ANNOTATION(x)
#endif

// On a class: instances are capabilities (mutexes) of the given kind, e.g. "mutex".
#ifndef CAPABILITY
#define CAPABILITY(x) KVSTASH_THREAD_ANNOTATION(capability(x))
#endif
// On a class: an RAII object that holds a capability for its lifetime.
#ifndef SCOPED_CAPABILITY
#define SCOPED_CAPABILITY KVSTASH_THREAD_ANNOTATION(scoped_lockable)
#endif
// On a member: reads need the capability shared, writes exclusively.
#ifndef GUARDED_BY
#define GUARDED_BY(x) KVSTASH_THREAD_ANNOTATION(guarded_by(x))
#endif
// On a pointer member: the pointee is guarded (the pointer itself is not).
#ifndef PT_GUARDED_BY
#define PT_GUARDED_BY(x) KVSTASH_THREAD_ANNOTATION(pt_guarded_by(x))
#endif
// On a capability member: the order in which capabilities must be taken.
#ifndef ACQUIRED_BEFORE
#define ACQUIRED_BEFORE(...) KVSTASH_THREAD_ANNOTATION(acquired_before(__VA_ARGS__))
#endif
#ifndef ACQUIRED_AFTER
#define ACQUIRED_AFTER(...) KVSTASH_THREAD_ANNOTATION(acquired_after(__VA_ARGS__))
#endif
// On a function: the caller must hold the capability (exclusively / shared).
#ifndef REQUIRES
#define REQUIRES(...) KVSTASH_THREAD_ANNOTATION(requires_capability(__VA_ARGS__))
#endif
#ifndef REQUIRES_SHARED
#define REQUIRES_SHARED(...) KVSTASH_THREAD_ANNOTATION(requires_shared_capability(__VA_ARGS__))
#endif
// On a function: it takes (releases) the capability and returns holding (not holding) it.
#ifndef ACQUIRE
#define ACQUIRE(...) KVSTASH_THREAD_ANNOTATION(acquire_capability(__VA_ARGS__))
#endif
#ifndef ACQUIRE_SHARED
#define ACQUIRE_SHARED(...) KVSTASH_THREAD_ANNOTATION(acquire_shared_capability(__VA_ARGS__))
#endif
#ifndef RELEASE
#define RELEASE(...) KVSTASH_THREAD_ANNOTATION(release_capability(__VA_ARGS__))
#endif
#ifndef RELEASE_SHARED
#define RELEASE_SHARED(...) KVSTASH_THREAD_ANNOTATION(release_shared_capability(__VA_ARGS__))
#endif
#ifndef RELEASE_GENERIC
#define RELEASE_GENERIC(...) KVSTASH_THREAD_ANNOTATION(release_generic_capability(__VA_ARGS__))
#endif
#ifndef TRY_ACQUIRE
#define TRY_ACQUIRE(...) KVSTASH_THREAD_ANNOTATION(try_acquire_capability(__VA_ARGS__))
#endif
// On a function: the caller must NOT hold the capability (it takes it itself).
#ifndef EXCLUDES
#define EXCLUDES(...) KVSTASH_THREAD_ANNOTATION(locks_excluded(__VA_ARGS__))
#endif
// On a function: tells the analysis the capability is held from here on (checked at run time by
// the implementation where it can be).
#ifndef ASSERT_CAPABILITY
#define ASSERT_CAPABILITY(x) KVSTASH_THREAD_ANNOTATION(assert_capability(x))
#endif
#ifndef ASSERT_SHARED_CAPABILITY
#define ASSERT_SHARED_CAPABILITY(x) KVSTASH_THREAD_ANNOTATION(assert_shared_capability(x))
#endif
// On a function: returns a reference to the given capability.
#ifndef RETURN_CAPABILITY
#define RETURN_CAPABILITY(x) KVSTASH_THREAD_ANNOTATION(lock_returned(x))
#endif
// On a function: not analysed. Each use says why in a comment.
#ifndef NO_THREAD_SAFETY_ANALYSIS
#define NO_THREAD_SAFETY_ANALYSIS KVSTASH_THREAD_ANNOTATION(no_thread_safety_analysis)
#endif
