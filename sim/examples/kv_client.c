/* kv_client: a load generator for kv_server on the same simulated host.
 *     kv_client [REQUESTS]      (default 200)
 * Connects to chan:kv (retrying until the server listens), then alternates
 * SET and GET requests, checks every reply and reports the simulated
 * request rate and mean round trip. */
#include <picolibos.h>

int main(int argc, char **argv)
{
    unsigned long n = argc > 1 ? strtoul(argv[1], NULL, 0) : 200;
    long c;
    for (int tries = 0; (c = pl_connect("chan:kv")) == PICO_ENOENT && tries < 100; tries++)
        sdk_sleep_ns(100000);
    if (c < 0) {
        printf("kv_client: connect chan:kv: %s\n", pl_strerror(c));
        return 1;
    }
    char line[160], want[80];
    unsigned long bad = 0;
    uint64_t t0 = sdk_clock_ns();
    for (unsigned long i = 0; i < n; i++) {
        unsigned long k = i / 2;
        if (i % 2 == 0) {
            pl_printf(c, "SET key%lu value-%lu\n", k, k * k);
            snprintf(want, sizeof want, "OK\n");
        } else {
            pl_printf(c, "GET key%lu\n", k);
            snprintf(want, sizeof want, "VALUE value-%lu\n", k * k);
        }
        long r = pl_read_line(c, line, sizeof line);
        if (r <= 0) {
            printf("kv_client: connection lost after %lu requests\n", i);
            return 1;
        }
        if (strcmp(line, want))
            bad++;
    }
    uint64_t t1 = sdk_clock_ns();
    pl_printf(c, "QUIT\n");
    pl_read_line(c, line, sizeof line);
    pl_close(c);
    uint64_t ns = t1 - t0;
    printf("kv_client: %lu requests, %lu bad replies, %llu ns simulated, mean round trip "
           "%llu ns, %llu requests/s\n", n, bad, (unsigned long long)ns,
           (unsigned long long)(n ? ns / n : 0),
           (unsigned long long)(ns ? n * 1000000000ULL / ns : 0));
    return bad ? 1 : 0;
}
