/* The backend interface: everything the SDK's libc needs from a target.
 *
 * The libc (sim/sdk/libc) calls only these functions, so every target
 * (pico, and Solo5's hvt and spt) reuses it unchanged. A target provides
 * them in its backend.c, plus start-up code that calls sdk_start() once
 * with the heap arena and the command line. See sim/sdk/README.md. */
#ifndef SDK_BACKEND_H
#define SDK_BACKEND_H
#include <stddef.h>
#include <stdint.h>

/* Write len bytes to the console (all of them, or give up silently). */
void sdk_backend_write(const char *buf, size_t len);
/* End the guest with a status; never returns. */
void sdk_backend_exit(int status) __attribute__((noreturn));
/* End the guest abnormally (abort(), failed stack check); never returns. */
void sdk_backend_abort(void) __attribute__((noreturn));
/* Nanoseconds of monotonic time since boot. */
uint64_t sdk_backend_clock_ns(void);
/* Nanoseconds since the Unix epoch. */
uint64_t sdk_backend_wall_ns(void);
/* Block for at least ns nanoseconds of monotonic time. */
void sdk_backend_sleep_ns(uint64_t ns);
/* Fill buf with len random bytes; 0 on success, negative on failure. */
int sdk_backend_random(void *buf, size_t len);
/* Take and release the heap's lock: malloc and free hold it, so threads
 * that a target preempts anywhere can share one heap. A target whose
 * guests have one thread makes these do nothing. */
void sdk_backend_heap_lock(void);
void sdk_backend_heap_unlock(void);

/* Provided by the libc, called by the target's start-up code exactly once:
 * sets up the stack guard, the heap arena [heap_start, heap_end) and argv
 * (cmdline is split on spaces; the string must outlive the call), runs
 * main() and exits with its result. */
void sdk_start(void *heap_start, void *heap_end, const char *cmdline)
    __attribute__((noreturn));

#endif /* SDK_BACKEND_H */
