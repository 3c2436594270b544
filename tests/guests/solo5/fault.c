/* fault: argument null | beyond | fs | hlt: a NULL read, a read of a page
 * beyond guest memory, an FS-relative read with no TLS base (FS base 0), or
 * hlt with interrupts off (privileged in a process). */
#include <picosim.h>

int main(int argc, char **argv)
{
    printf("\n**** Solo5 standalone test_fault ****\n\n");
    const char *what = argc > 0 ? argv[0] : "null";
    uint64_t v = 0;
    if (strcmp(what, "null") == 0)
        v = *(volatile uint64_t *)0;
    else if (strcmp(what, "beyond") == 0)
        v = *(volatile uint64_t *)0xF0000000ull;
    else if (strcmp(what, "fs") == 0)
        __asm__ volatile("movq %%fs:0x28, %0" : "=r"(v));
    else if (strcmp(what, "hlt") == 0)
        __asm__ volatile("cli; hlt");
    printf("read %u: no fault\nFAILURE\n", (unsigned)v);
    return 1;
}
