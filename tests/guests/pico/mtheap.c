/* Four threads malloc, fill, check and free blocks at random while the
 * scheduler preempts them at every slice end: the heap must come out
 * whole (every block still holds its owner's bytes; free space as before). */
#include <picolibos.h>
#define THREADS 4
static unsigned long seeds[THREADS];
static int rounds;
static long failures[THREADS];
static void worker(void *arg)
{
    long id = (long)arg;
    unsigned long x = seeds[id];
    void *live[16] = {0};
    for (int i = 0; i < rounds; i++) {
        x = x * 6364136223846793005ul + 1442695040888963407ul;
        int slot = (x >> 33) % 16;
        if (live[slot]) {
            unsigned char *p = live[slot];
            if (p[0] != (unsigned char)id) failures[id]++;
            free(live[slot]);
            live[slot] = NULL;
        } else {
            size_t n = 16 + (x >> 40) % 2000;
            unsigned char *p = malloc(n);
            if (!p) { failures[id]++; continue; }
            memset(p, (int)id, n);
            live[slot] = p;
        }
    }
    for (int s = 0; s < 16; s++) free(live[s]);
}
int main(int argc, char **argv)
{
    rounds = argc > 1 ? atoi(argv[1]) : 1000;
    size_t before, after, largest;
    sdk_heap_stats(&before, &largest);
    pl_thread_t t[THREADS];
    for (long i = 0; i < THREADS; i++) {
        seeds[i] = 1234567u * (i + 1);
        if (pl_thread_create(&t[i], worker, (void *)i) < 0) { printf("ABORT create\n"); return 1; }
    }
    for (int i = 0; i < THREADS; i++) pl_thread_join(&t[i]);
    sdk_heap_stats(&after, &largest);
    long bad = 0;
    for (int i = 0; i < THREADS; i++) bad += failures[i];
    printf("%s: %ld failures, free %lu -> %lu\n", bad == 0 && after == before ? "SUCCESS" : "ABORT",
           bad, (unsigned long)before, (unsigned long)after);
    return bad == 0 && after == before ? 0 : 1;
}
