/* hello: prints its command line (Solo5 passes the guest arguments only). */
#include <picosim.h>

int main(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    printf("\n**** Solo5 standalone test_hello ****\n\n");
    printf("Hello, World\nCommand line is: '%s'\n", sdk_cmdline());
    printf("SUCCESS\n");
    return 0;
}
