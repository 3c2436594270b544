/* hello: greets, then shows its command line and each argument. */
#include <picosim.h>

int main(int argc, char **argv)
{
    printf("Hello from picosim!\n");
    printf("command line: \"%s\"\n", sdk_cmdline());
    for (int i = 0; i < argc; i++)
        printf("argv[%d] = %s\n", i, argv[i]);
    return 0;
}
