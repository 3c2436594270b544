/* sleep: sleeps 5 ms and reports how much monotonic time passed. */
#include <picosim.h>

int main(void)
{
    uint64_t start = sdk_clock_ns();
    sdk_sleep_ns(5000000);
    uint64_t end = sdk_clock_ns();
    printf("slept %llu ns\n", (unsigned long long)(end - start));
    return 0;
}
