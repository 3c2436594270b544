/* fault_div0: an integer division by zero (#DE, vector 0). */
#include <picosim.h>

int main(void)
{
    volatile int zero = 0; /* volatile: gcc cannot fold the division away */
    volatile int n = 42;
    printf("dividing %d by zero...\n", n);
    int q = n / zero;
    printf("42 / 0 = %d?!\n", q);
    return 0;
}
