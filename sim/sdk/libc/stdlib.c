/* Numbers, leaving, and the target's clocks, sleep and randomness. */
#include "picosim.h"
#include "sdk_backend.h"

static int is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

static int digit_value(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'z') return c - 'a' + 10;
    if (c >= 'A' && c <= 'Z') return c - 'A' + 10;
    return 99;
}

/* The magnitude and sign of a number; on overflow, ULONG_MAX and *overflow
 * set. base 0 reads a 0x (hex) or 0 (octal) prefix, like C's strtoul. */
static unsigned long parse(const char *s, char **end, int base, int *negative, int *overflow)
{
    const char *p = s;
    while (is_space(*p))
        p++;
    *negative = 0;
    if (*p == '+' || *p == '-')
        *negative = *p++ == '-';
    if ((base == 0 || base == 16) && p[0] == '0' && (p[1] == 'x' || p[1] == 'X')
        && digit_value(p[2]) < 16) {
        p += 2;
        base = 16;
    } else if (base == 0) {
        base = *p == '0' ? 8 : 10;
    }
    unsigned long v = 0;
    *overflow = 0;
    const char *digits = p;
    for (; digit_value(*p) < base; p++) {
        unsigned long d = (unsigned long)digit_value(*p);
        if (v > ((unsigned long)-1 - d) / (unsigned long)base)
            *overflow = 1;
        v = v * (unsigned long)base + d;
    }
    if (end)
        *end = (char *)(p == digits ? s : p);
    return *overflow ? (unsigned long)-1 : v;
}

unsigned long strtoul(const char *s, char **end, int base)
{
    int negative, overflow;
    unsigned long v = parse(s, end, base, &negative, &overflow);
    return negative && !overflow ? 0UL - v : v;
}

long strtol(const char *s, char **end, int base)
{
    int negative, overflow;
    unsigned long v = parse(s, end, base, &negative, &overflow);
    unsigned long limit = negative ? (unsigned long)1 << 63 : ((unsigned long)1 << 63) - 1;
    if (v > limit)
        v = limit;
    return negative ? (long)(0UL - v) : (long)v;
}

int atoi(const char *s)
{
    return (int)strtol(s, NULL, 10);
}

void exit(int status)
{
    sdk_backend_exit(status);
}

void abort(void)
{
    static const char msg[] = "abort() called\n";
    sdk_backend_write(msg, sizeof msg - 1);
    sdk_backend_abort();
}

uint64_t sdk_clock_ns(void) { return sdk_backend_clock_ns(); }
uint64_t sdk_wall_ns(void) { return sdk_backend_wall_ns(); }
void sdk_sleep_ns(uint64_t ns) { sdk_backend_sleep_ns(ns); }
int sdk_random(void *buf, size_t len) { return sdk_backend_random(buf, len); }
