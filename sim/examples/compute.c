/* compute: a checksum kernel. Fills a buffer of KIB kibibytes with a
 * pseudo-random pattern, then runs 64-bit FNV-1a over it ROUNDS times,
 * feeding each round's hash into the next.
 *     compute [KIB [ROUNDS]]      (defaults: 16 KiB, 24 rounds)
 * The defaults retire about 2 million instructions. */
#include <picosim.h>

#define FNV_OFFSET 0xcbf29ce484222325ULL
#define FNV_PRIME 0x100000001b3ULL

static uint64_t fnv1a(uint64_t h, const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= FNV_PRIME;
    }
    return h;
}

int main(int argc, char **argv)
{
    unsigned long kib = argc > 1 ? strtoul(argv[1], NULL, 0) : 16;
    unsigned long rounds = argc > 2 ? strtoul(argv[2], NULL, 0) : 24;
    size_t n = kib * 1024;
    unsigned char *buf = malloc(n ? n : 1);
    if (!buf) {
        printf("compute: cannot allocate %lu KiB\n", kib);
        return 1;
    }
    uint32_t x = 2463534242u; /* xorshift32 */
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        buf[i] = (unsigned char)x;
    }
    uint64_t h = FNV_OFFSET;
    for (unsigned long r = 0; r < rounds; r++)
        h = fnv1a(h, buf, n);
    printf("fnv1a64 over %lu KiB x %lu rounds = %016llx\n", kib, rounds,
           (unsigned long long)h);
    free(buf);
    return 0;
}
