/* Devices of the Solo5 targets (hvt, spt), as the SDK offers them to apps.
 *
 * A device is found by the name the image's manifest declares (build with
 * devices=["block:storage", "net:service0"]); its handle is its manifest
 * index. Results are Solo5's: OK 0, AGAIN 1, EINVAL 2, EUNSPEC 3. */
#ifndef SOLO5_DEV_H
#define SOLO5_DEV_H
#include <stddef.h>
#include <stdint.h>

enum { S5_OK = 0, S5_AGAIN = 1, S5_EINVAL = 2, S5_EUNSPEC = 3 };
enum { S5_DEV_BLOCK = 1, S5_DEV_NET = 2 };

struct s5_block_info {
    uint64_t capacity;   /* bytes */
    uint64_t block_size; /* bytes; I/O is whole blocks */
};

struct s5_net_info {
    uint8_t mac[6];
    uint64_t mtu;
};

int s5_block_acquire(const char *name, uint64_t *handle, struct s5_block_info *info);
int s5_block_write(uint64_t handle, uint64_t offset, const void *buf, size_t len);
int s5_block_read(uint64_t handle, uint64_t offset, void *buf, size_t len);

int s5_net_acquire(const char *name, uint64_t *handle, struct s5_net_info *info);
int s5_net_write(uint64_t handle, const void *buf, size_t len);
/* *read gets the frame's size; AGAIN when no frame is queued. */
int s5_net_read(uint64_t handle, void *buf, size_t size, size_t *read);

/* Wait until the monotonic clock (sdk_clock_ns) reaches deadline_ns or a
 * net device has a frame; *ready_set gets bit i for device handle i. */
void s5_yield(uint64_t deadline_ns, uint64_t *ready_set);

/* The manifest as the monitor filled it in (shared by both backends). */
struct s5_mft_entry {
    char name[68];
    uint32_t type;
    union {
        struct { uint64_t capacity; uint16_t block_size; } block;
        struct { uint8_t mac[6]; uint16_t mtu; } net;
    } u;
    uint64_t hostfd;
    uint8_t attached;
};

struct s5_mft {
    uint32_t version;
    uint32_t entries;
    struct s5_mft_entry e[];
};

extern const struct s5_mft *s5_manifest;
/* The entry called name with this type and attached, or NULL; *index gets its index. */
const struct s5_mft_entry *s5_find(const char *name, uint32_t type, uint64_t *index);
/* Write a hex number to the console (usable when nothing else is). */
void s5_put_hex(const char *label, uint64_t value);

#endif /* SOLO5_DEV_H */
