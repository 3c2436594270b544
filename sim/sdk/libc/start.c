/* Start-up shared by every target: the stack guard, the heap, argv, main.
 * Nothing here may be built with a stack protector check that could fail:
 * sdk_start changes the guard and never returns. */
#include "picosim.h"
#include "sdk_backend.h"

#define MAX_ARGS 64
#define MAX_CMDLINE 4096

int main(int argc, char **argv);

/* gcc's -fstack-protector reads this canary; __stack_chk_fail is called
 * when a function's copy of it was overwritten. */
uintptr_t __stack_chk_guard = 0x00000aff0a0d0000ULL;

void __stack_chk_fail(void) __attribute__((noreturn));
void __stack_chk_fail(void)
{
    static const char msg[] = "*** stack smashing detected ***: terminated\n";
    sdk_backend_write(msg, sizeof msg - 1);
    sdk_backend_abort();
}

static const char *cmdline = "";
static char argbuf[MAX_CMDLINE];
static char *argv[MAX_ARGS + 1];

const char *sdk_cmdline(void)
{
    return cmdline;
}

/* Split a copy of the command line on spaces into argv. */
static int split_args(const char *line)
{
    size_t n = strlen(line);
    if (n >= sizeof argbuf)
        n = sizeof argbuf - 1;
    memcpy(argbuf, line, n);
    argbuf[n] = '\0';
    int argc = 0;
    char *p = argbuf;
    while (*p && argc < MAX_ARGS) {
        while (*p == ' ')
            *p++ = '\0';
        if (!*p)
            break;
        argv[argc++] = p;
        while (*p && *p != ' ')
            p++;
    }
    argv[argc] = NULL;
    return argc;
}

__attribute__((no_stack_protector))
void sdk_start(void *heap_start, void *heap_end, const char *line)
{
    uintptr_t guard = 0;
    if (sdk_backend_random(&guard, sizeof guard) == 0)
        /* A zero low byte stops string functions from leaking or copying it. */
        __stack_chk_guard = guard & ~(uintptr_t)0xff;
    sdk_heap_init(heap_start, heap_end);
    cmdline = line ? line : "";
    int argc = split_args(cmdline);
    exit(main(argc, argv));
}
