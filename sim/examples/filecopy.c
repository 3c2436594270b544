/* filecopy: file I/O inside the picoprocess's sandbox.
 *     filecopy [KIB]      (default 20)
 * Writes file:data/in.bin with a pattern, copies it 4 KiB at a time to
 * file:data/out.bin, reads both back and compares them. */
#include <picolibos.h>

static unsigned char buf[4096];

static uint64_t checksum(const char *uri, long *size)
{
    long h = pl_open(uri, PL_OPEN_READ);
    uint64_t sum = 0xcbf29ce484222325ULL;
    *size = 0;
    if (h < 0)
        return 0;
    long n;
    while ((n = pl_read(h, buf, sizeof buf)) > 0) {
        for (long i = 0; i < n; i++)
            sum = (sum ^ buf[i]) * 0x100000001b3ULL;
        *size += n;
    }
    pl_close(h);
    return sum;
}

int main(int argc, char **argv)
{
    unsigned long kib = argc > 1 ? strtoul(argv[1], NULL, 0) : 20;
    long out = pl_open("file:data/in.bin", PL_OPEN_WRITE | PL_OPEN_CREATE | PL_OPEN_TRUNCATE);
    if (out < 0) {
        printf("filecopy: cannot create file:data/in.bin: %s\n", pl_strerror(out));
        return 1;
    }
    for (unsigned long k = 0; k < kib; k++) {
        memset(buf, 'a' + (int)(k % 26), 1024);
        long r = pl_write(out, buf, 1024);
        if (r < 0) {
            printf("filecopy: write: %s\n", pl_strerror(r));
            return 1;
        }
    }
    pl_close(out);

    long src = pl_open("file:data/in.bin", PL_OPEN_READ);
    long dst = pl_open("file:data/out.bin", PL_OPEN_WRITE | PL_OPEN_CREATE | PL_OPEN_TRUNCATE);
    if (src < 0 || dst < 0) {
        printf("filecopy: open: %s\n", pl_strerror(src < 0 ? src : dst));
        return 1;
    }
    long copied = 0, n;
    uint64_t t0 = sdk_clock_ns();
    while ((n = pl_read(src, buf, sizeof buf)) > 0) {
        long r = pl_write(dst, buf, (size_t)n);
        if (r < 0) {
            printf("filecopy: write: %s\n", pl_strerror(r));
            return 1;
        }
        copied += n;
    }
    uint64_t t1 = sdk_clock_ns();
    pl_close(src);
    pl_close(dst);

    long a_size, b_size;
    uint64_t a = checksum("file:data/in.bin", &a_size);
    uint64_t b = checksum("file:data/out.bin", &b_size);
    printf("filecopy: copied %ld bytes in %llu ns (simulated); in %ld bytes %016llx, "
           "out %ld bytes %016llx: %s\n", copied, (unsigned long long)(t1 - t0), a_size,
           (unsigned long long)a, b_size, (unsigned long long)b,
           a == b && a_size == b_size ? "identical" : "DIFFERENT");
    pl_delete("file:data/in.bin");
    return a == b && a_size == b_size ? 0 : 1;
}
