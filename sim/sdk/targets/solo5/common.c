/* What the hvt and spt backends share on top of s5_yield and the clock. */
#include "sdk_backend.h"
#include "solo5_dev.h"

void sdk_backend_sleep_ns(uint64_t ns)
{
    uint64_t deadline = sdk_backend_clock_ns() + ns;
    while (sdk_backend_clock_ns() < deadline)
        s5_yield(deadline, 0);
}

/* Solo5 offers no entropy source: a xorshift generator seeded from the
 * (simulated, so reproducible) monotonic clock at first use. */
int sdk_backend_random(void *buf, size_t len)
{
    static uint64_t state;
    if (!state)
        state = sdk_backend_clock_ns() | 1;
    uint8_t *out = buf;
    for (size_t i = 0; i < len; i++) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out[i] = (uint8_t)(state >> 24);
    }
    return 0;
}

/* A Solo5 unikernel has one thread: nothing to lock. */
void sdk_backend_heap_lock(void)
{
}

void sdk_backend_heap_unlock(void)
{
}
