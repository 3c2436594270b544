/* time: POLL (or epoll) for 1 s with no device; monotonic time must have
 * advanced by at least that and not much more; wall time too. */
#include <picosim.h>
#include "solo5_dev.h"

#define NSEC_PER_SEC 1000000000ull

int main(void)
{
    printf("\n**** Solo5 standalone test_time ****\n\n");
    uint64_t t0 = sdk_clock_ns(), w0 = sdk_wall_ns();
    if (w0 < 1600000000ull * NSEC_PER_SEC) {
        printf("ABORT: wall clock before 2020\n");
        return 1;
    }
    uint64_t ready = 1;
    s5_yield(t0 + NSEC_PER_SEC, &ready);
    uint64_t t1 = sdk_clock_ns(), w1 = sdk_wall_ns();
    uint64_t slept = t1 - t0;
    printf("slept %u us (wall %u us)\n", (unsigned)(slept / 1000), (unsigned)((w1 - w0) / 1000));
    if (ready != 0 || slept < NSEC_PER_SEC || slept > NSEC_PER_SEC + NSEC_PER_SEC / 100 ||
        w1 - w0 < NSEC_PER_SEC) {
        printf("ABORT: bad sleep\n");
        return 1;
    }
    sdk_sleep_ns(5000000);
    if (sdk_clock_ns() - t1 < 5000000) {
        printf("ABORT: short sleep\n");
        return 1;
    }
    printf("SUCCESS\n");
    return 0;
}
