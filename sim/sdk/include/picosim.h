/* picosim.h: the guest SDK's application interface.
 *
 * A small freestanding C library: formatted output, strings, a heap, and
 * the clocks, sleep and random bytes of the target. Apps define
 *     int main(int argc, char **argv);
 * argv comes from the command line split on spaces; main's result is the
 * guest's exit status. */
#ifndef PICOSIM_H
#define PICOSIM_H
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#ifndef NULL
#define NULL ((void *)0)
#endif
#define SDK_PRINTF(f, a) __attribute__((format(printf, f, a)))

/* Output: printf and friends support %d %i %u %x %X %o %p %s %c %% with the
 * flags '-' '0' '+' ' ', a width and a precision (numbers or '*'), and the
 * length modifiers hh h l ll z. */
int printf(const char *fmt, ...) SDK_PRINTF(1, 2);
int vprintf(const char *fmt, va_list ap) SDK_PRINTF(1, 0);
int snprintf(char *buf, size_t size, const char *fmt, ...) SDK_PRINTF(3, 4);
int vsnprintf(char *buf, size_t size, const char *fmt, va_list ap) SDK_PRINTF(3, 0);
int puts(const char *s);
int putchar(int c);

/* Memory and strings. */
void *memcpy(void *dst, const void *src, size_t n);
void *memmove(void *dst, const void *src, size_t n);
void *memset(void *dst, int c, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);
int strcmp(const char *a, const char *b);
int strncmp(const char *a, const char *b, size_t n);
char *strcpy(char *dst, const char *src);
char *strncpy(char *dst, const char *src, size_t n);
char *strchr(const char *s, int c);
char *strrchr(const char *s, int c);
char *strstr(const char *haystack, const char *needle);

/* The heap: first fit over the arena the target hands over, 16-byte aligned. */
void *malloc(size_t size);
void free(void *p);
void *calloc(size_t n, size_t size);
void *realloc(void *p, size_t size);
/* Bytes free in the heap and the largest free block (for tests and demos). */
void sdk_heap_stats(size_t *free_bytes, size_t *largest_block);
/* Hand the heap arena [start, end) to the allocator (sdk_start does this). */
void sdk_heap_init(void *start, void *end);

/* Numbers. */
int atoi(const char *s);
long strtol(const char *s, char **end, int base);
unsigned long strtoul(const char *s, char **end, int base);

/* Leaving. abort() prints a message and ends the guest abnormally (status
 * 134 on pico); exit(status) ends it normally. */
void abort(void) __attribute__((noreturn));
void exit(int status) __attribute__((noreturn));

/* Time and randomness, from the target. */
uint64_t sdk_clock_ns(void);   /* monotonic nanoseconds since boot */
uint64_t sdk_wall_ns(void);    /* nanoseconds since the Unix epoch */
void sdk_sleep_ns(uint64_t ns);
int sdk_random(void *buf, size_t len); /* 0, or negative on failure */

/* The whole command line, as the target passed it. */
const char *sdk_cmdline(void);

#endif /* PICOSIM_H */
