// Clang's thread-safety analysis attributes (https://clang.llvm.org/docs/ThreadSafetyAnalysis.html),
// spelled as macros so that other compilers see nothing. A clang build with -Wthread-safety
// (KVSTASH_THREAD_SAFETY=ON, docs/ARCHITECTURE.md §7) turns a broken lock rule into a compile error:
// reading a GUARDED_BY member without its mutex, calling a REQUIRES function unlocked, or calling an
// EXCLUDES function with the mutex held.
//
// Use them with the annotated types of common/mutex.h; std::mutex itself carries no annotations.
#pragma once

#if defined(__clang__)
#define KVSTASH_THREAD_ANNOTATION(x) __attribute__((x))
#else
#define KVSTASH_THREAD_ANNOTATION(x)
#endif

// On a class: instances are capabilities (mutexes) of the given kind, e.g. "mutex".
#define CAPABILITY(x) KVSTASH_THREAD_ANNOTATION(capability(x))
// On a class: an RAII object that holds a capability for its lifetime.
#define SCOPED_CAPABILITY KVSTASH_THREAD_ANNOTATION(scoped_lockable)
// On a member: reads need the capability shared, writes exclusively.
#define GUARDED_BY(x) KVSTASH_THREAD_ANNOTATION(guarded_by(x))
// On a pointer member: the pointee is guarded (the pointer itself is not).
#define PT_GUARDED_BY(x) KVSTASH_THREAD_ANNOTATION(pt_guarded_by(x))
// On a capability member: the order in which capabilities must be taken.
#define ACQUIRED_BEFORE(...) KVSTASH_THREAD_ANNOTATION(acquired_before(__VA_ARGS__))
#define ACQUIRED_AFTER(...) KVSTASH_THREAD_ANNOTATION(acquired_after(__VA_ARGS__))
// On a function: the caller must hold the capability (exclusively / shared).
#define REQUIRES(...) KVSTASH_THREAD_ANNOTATION(requires_capability(__VA_ARGS__))
#define REQUIRES_SHARED(...) KVSTASH_THREAD_ANNOTATION(requires_shared_capability(__VA_ARGS__))
// On a function: it takes (releases) the capability and returns holding (not holding) it.
#define ACQUIRE(...) KVSTASH_THREAD_ANNOTATION(acquire_capability(__VA_ARGS__))
#define ACQUIRE_SHARED(...) KVSTASH_THREAD_ANNOTATION(acquire_shared_capability(__VA_ARGS__))
#define RELEASE(...) KVSTASH_THREAD_ANNOTATION(release_capability(__VA_ARGS__))
#define RELEASE_SHARED(...) KVSTASH_THREAD_ANNOTATION(release_shared_capability(__VA_ARGS__))
#define RELEASE_GENERIC(...) KVSTASH_THREAD_ANNOTATION(release_generic_capability(__VA_ARGS__))
#define TRY_ACQUIRE(...) KVSTASH_THREAD_ANNOTATION(try_acquire_capability(__VA_ARGS__))
// On a function: the caller must NOT hold the capability (it takes it itself).
#define EXCLUDES(...) KVSTASH_THREAD_ANNOTATION(locks_excluded(__VA_ARGS__))
// On a function: tells the analysis the capability is held from here on (checked at run time by
// the implementation where it can be).
#define ASSERT_CAPABILITY(x) KVSTASH_THREAD_ANNOTATION(assert_capability(x))
#define ASSERT_SHARED_CAPABILITY(x) KVSTASH_THREAD_ANNOTATION(assert_shared_capability(x))
// On a function: returns a reference to the given capability.
#define RETURN_CAPABILITY(x) KVSTASH_THREAD_ANNOTATION(lock_returned(x))
// On a function: not analysed. Each use says why in a comment.
#define NO_THREAD_SAFETY_ANALYSIS KVSTASH_THREAD_ANNOTATION(no_thread_safety_analysis)
