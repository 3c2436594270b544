/* fault_null: stores through a NULL pointer. Page 0 is unmapped, so the
 * guest stops with a page fault at address 0. */
#include <picosim.h>

int main(void)
{
    /* volatile twice: gcc can neither see that p is NULL nor drop the store */
    volatile int *volatile p = NULL;
    printf("writing through a NULL pointer...\n");
    *p = 42;
    printf("still alive?!\n");
    return 0;
}
