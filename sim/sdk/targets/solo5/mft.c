/* Manifest look-up and acquisition, shared by the hvt and spt backends. */
#include "sdk_backend.h"
#include "solo5_dev.h"

_Static_assert(sizeof(struct s5_mft_entry) == 104, "manifest entry is 104 bytes");

const struct s5_mft *s5_manifest;

static int same(const char *a, const char *b)
{
    while (*a && *a == *b)
        a++, b++;
    return *a == *b;
}

const struct s5_mft_entry *s5_find(const char *name, uint32_t type, uint64_t *index)
{
    if (!s5_manifest)
        return NULL;
    for (uint32_t i = 1; i < s5_manifest->entries; i++) {
        const struct s5_mft_entry *e = &s5_manifest->e[i];
        if (e->type == type && e->attached && same(e->name, name)) {
            *index = i;
            return e;
        }
    }
    return NULL;
}

int s5_block_acquire(const char *name, uint64_t *handle, struct s5_block_info *info)
{
    const struct s5_mft_entry *e = s5_find(name, S5_DEV_BLOCK, handle);
    if (!e)
        return S5_EINVAL;
    info->capacity = e->u.block.capacity;
    info->block_size = e->u.block.block_size;
    return S5_OK;
}

int s5_net_acquire(const char *name, uint64_t *handle, struct s5_net_info *info)
{
    const struct s5_mft_entry *e = s5_find(name, S5_DEV_NET, handle);
    if (!e)
        return S5_EINVAL;
    for (int i = 0; i < 6; i++)
        info->mac[i] = e->u.net.mac[i];
    info->mtu = e->u.net.mtu;
    return S5_OK;
}

void s5_put_hex(const char *label, uint64_t value)
{
    char buf[96];
    size_t n = 0;
    while (*label && n < 60)
        buf[n++] = *label++;
    buf[n++] = '0';
    buf[n++] = 'x';
    int started = 0;
    for (int shift = 60; shift >= 0; shift -= 4) {
        unsigned d = (value >> shift) & 0xf;
        if (d || started || shift == 0) {
            buf[n++] = "0123456789abcdef"[d];
            started = 1;
        }
    }
    sdk_backend_write(buf, n);
}
