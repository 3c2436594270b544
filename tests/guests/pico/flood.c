/* A writer floods pipe:flood with a counting pattern; a slow reader takes
 * 1000 bytes every 20 us and checks every byte. Arguments: TOTAL w|r. */
#include <picolibos.h>
static char block[8192];
int main(int argc, char **argv)
{
    long total = strtol(argv[1], NULL, 0);
    if (argv[2][0] == 'w') {
        long h = pl_open("pipe:flood", PL_OPEN_WRITE);
        for (long sent = 0; sent < total; sent += sizeof block) {
            for (unsigned i = 0; i < sizeof block; i++) block[i] = (char)(sent / sizeof block + i);
            if (pl_write(h, block, sizeof block) < 0) { printf("ABORT write\n"); return 1; }
        }
        printf("writer: %ld bytes at t=%lu\n", total, (unsigned long)pico_clock_monotonic());
        return 0;
    }
    long h = pl_open("pipe:flood", PL_OPEN_READ);
    long got = 0, bad = 0;
    while (got < total) {
        long n = pico_stream_read(h, block, 1000);
        if (n <= 0) { printf("ABORT read %ld\n", n); return 1; }
        for (long i = 0; i < n; i++)
            if (block[i] != (char)((got + i) / 8192 + (got + i) % 8192)) bad++;
        got += n;
        pico_sleep_until(pico_clock_monotonic() + 20000);  /* a slow reader */
    }
    printf("reader: %ld bytes, %ld bad, t=%lu\n", got, bad, (unsigned long)pico_clock_monotonic());
    return bad ? 1 : 0;
}
