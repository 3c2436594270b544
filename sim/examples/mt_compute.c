/* mt_compute: a multi-threaded checksum on the pico library OS.
 *     mt_compute [THREADS [KIB]]     (defaults: 4 threads, 64 KiB)
 * Each thread hashes its own slice of a shared buffer (FNV-1a), adds its
 * byte count to a shared total under a futex mutex and yields now and then.
 * The main thread joins them all and combines the hashes in thread order, so
 * the result is the same whatever the scheduling slice (try --slice). */
#include <picolibos.h>

#define MAX_THREADS 16

static unsigned char *data;
static size_t chunk;
static uint64_t hashes[MAX_THREADS];
static uint64_t total_bytes;
static pl_mutex_t total_lock = PL_MUTEX_INIT;

static void worker(void *arg)
{
    unsigned long id = (unsigned long)arg;
    const unsigned char *p = data + id * chunk;
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < chunk; i++) {
        h ^= p[i];
        h *= 0x100000001b3ULL;
        if ((i & 4095) == 4095) {
            pl_mutex_lock(&total_lock);
            total_bytes += 4096;
            pl_mutex_unlock(&total_lock);
            if ((i & 16383) == 16383)
                pico_thread_yield();
        }
    }
    pl_mutex_lock(&total_lock);
    total_bytes += chunk & 4095;
    pl_mutex_unlock(&total_lock);
    hashes[id] = h;
}

int main(int argc, char **argv)
{
    unsigned long n = argc > 1 ? strtoul(argv[1], NULL, 0) : 4;
    unsigned long kib = argc > 2 ? strtoul(argv[2], NULL, 0) : 64;
    if (n < 1 || n > MAX_THREADS) {
        printf("mt_compute: 1 to %d threads\n", MAX_THREADS);
        return 2;
    }
    long r = pl_vm_heap(1 << 20);
    if (r < 0) {
        printf("mt_compute: no heap: %s\n", pl_strerror(r));
        return 1;
    }
    chunk = kib * 1024 / n;
    data = pl_vm_alloc(chunk * n + 1);
    if (!data) {
        printf("mt_compute: cannot allocate %lu KiB\n", kib);
        return 1;
    }
    uint32_t x = 2463534242u;
    for (size_t i = 0; i < chunk * n; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        data[i] = (unsigned char)x;
    }
    pl_thread_t t[MAX_THREADS];
    for (unsigned long i = 0; i < n; i++) {
        r = pl_thread_create(&t[i], worker, (void *)i);
        if (r < 0) {
            printf("mt_compute: thread %lu: %s\n", i, pl_strerror(r));
            return 1;
        }
    }
    uint64_t combined = 0;
    for (unsigned long i = 0; i < n; i++) {
        pl_thread_join(&t[i]);
        combined = combined * 31 + hashes[i];
    }
    printf("mt_compute: %lu threads, %llu bytes hashed, result %016llx\n", n,
           (unsigned long long)total_bytes, (unsigned long long)combined);
    return 0;
}
