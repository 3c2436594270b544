/* stack_smash: overflows a local buffer; the stack protector notices when
 * the function returns and stops the guest (status 134 on pico). */
#include <picosim.h>

static volatile size_t overflow = 64; /* volatile: gcc cannot see the overflow */

__attribute__((noinline)) static int fill(char c)
{
    char buf[16];
    memset(buf, c, overflow); /* 64 bytes into a 16-byte buffer */
    __asm__ volatile("" : : "r"(buf) : "memory");
    return buf[0];
}

int main(void)
{
    printf("overflowing a 16-byte stack buffer by %zu bytes...\n", overflow - 16);
    fill('A');
    printf("returned normally?!\n");
    return 0;
}
