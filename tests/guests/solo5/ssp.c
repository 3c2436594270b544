/* ssp: overflows a stack buffer; the stack protector must abort. */
#include <picosim.h>

__attribute__((noinline)) static void smash(const char *src, size_t n)
{
    char buf[16];
    for (size_t i = 0; i < n; i++)
        ((volatile char *)buf)[i] = src[i % 8];
    printf("buf[0]=%c\n", buf[0]);
}

int main(void)
{
    printf("\n**** Solo5 standalone test_ssp ****\n\n");
    smash("AAAAAAAA", 64);
    printf("FAILURE: returned\n");
    return 1;
}
