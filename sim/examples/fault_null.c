/* fault_null: stores through a NULL pointer. Page 0 is unmapped, so the
 * guest stops with a page fault at address 0. */
#include <picosim.h>

int main(void)
{
    int *volatile p = NULL; /* volatile: gcc cannot see that p is NULL */
    printf("writing through a NULL pointer...\n");
    *p = 42;
    printf("still alive?!\n");
    return 0;
}
