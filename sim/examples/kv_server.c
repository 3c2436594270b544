/* kv_server: a key-value store served on chan:kv.
 *     kv_server [CLIENTS]     (default 1: exit after that many disconnect)
 * Protocol, one request per line: "SET key value", "GET key", "QUIT".
 * Replies: "OK", "VALUE value", "MISSING". Boot it with a client beside it:
 *     sim boot kv_server --peer kv_client */
#include <picolibos.h>

#define SLOTS 256

static char keys[SLOTS][32];
static char values[SLOTS][64];
static int used[SLOTS];

static unsigned find(const char *k)
{
    unsigned h = 2166136261u;
    for (const char *p = k; *p; p++)
        h = (h ^ (unsigned char)*p) * 16777619u;
    for (unsigned i = 0; i < SLOTS; i++) {
        unsigned s = (h + i) % SLOTS;
        if (!used[s] || !strcmp(keys[s], k))
            return s;
    }
    return SLOTS;
}

static void serve(long conn, unsigned long *requests)
{
    char line[160];
    long n;
    while ((n = pl_read_line(conn, line, sizeof line)) > 0) {
        if (line[n - 1] == '\n')
            line[--n] = '\0';
        char *arg = strchr(line, ' ');
        if (arg)
            *arg++ = '\0';
        ++*requests;
        if (!strcmp(line, "SET") && arg) {
            char *val = strchr(arg, ' ');
            if (!val) {
                pl_printf(conn, "ERROR\n");
                continue;
            }
            *val++ = '\0';
            unsigned s = find(arg);
            if (s == SLOTS || strlen(arg) >= 32 || strlen(val) >= 64) {
                pl_printf(conn, "FULL\n");
                continue;
            }
            used[s] = 1;
            strcpy(keys[s], arg);
            strcpy(values[s], val);
            pl_printf(conn, "OK\n");
        } else if (!strcmp(line, "GET") && arg) {
            unsigned s = find(arg);
            if (s < SLOTS && used[s])
                pl_printf(conn, "VALUE %s\n", values[s]);
            else
                pl_printf(conn, "MISSING\n");
        } else if (!strcmp(line, "QUIT")) {
            pl_printf(conn, "BYE\n");
            break;
        } else {
            pl_printf(conn, "ERROR\n");
        }
    }
}

int main(int argc, char **argv)
{
    unsigned long clients = argc > 1 ? strtoul(argv[1], NULL, 0) : 1;
    long l = pl_listen("chan:kv");
    if (l < 0) {
        printf("kv_server: listen chan:kv: %s\n", pl_strerror(l));
        return 1;
    }
    printf("kv_server: listening on chan:kv\n");
    unsigned long requests = 0;
    for (unsigned long c = 0; c < clients; c++) {
        long conn = pl_accept(l);
        if (conn < 0) {
            printf("kv_server: accept: %s\n", pl_strerror(conn));
            return 1;
        }
        serve(conn, &requests);
        pl_close(conn);
    }
    printf("kv_server: served %lu requests from %lu client(s)\n", requests, clients);
    pl_close(l);
    return 0;
}
