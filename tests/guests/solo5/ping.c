/* ping: answers ARP and ICMP echo for 10.0.0.2 on net device "service0".
 * Optional argument: answer that many echo requests, then exit (SUCCESS). */
#include <picosim.h>
#include "solo5_dev.h"

static const uint8_t my_ip[4] = {10, 0, 0, 2};
static uint8_t my_mac[6];
static uint8_t frame[1514];

static uint16_t be16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }

static uint16_t checksum(const uint8_t *p, size_t n)
{
    uint32_t s = 0;
    for (size_t i = 0; i + 1 < n; i += 2)
        s += be16(p + i);
    if (n & 1)
        s += (uint32_t)p[n - 1] << 8;
    while (s >> 16)
        s = (s & 0xffff) + (s >> 16);
    return (uint16_t)~s;
}

static void swap_macs(uint8_t *f)
{
    memcpy(f, f + 6, 6);
    memcpy(f + 6, my_mac, 6);
}

/* 1 when an ARP request for us was turned into the reply. */
static int arp(uint8_t *f, size_t n)
{
    uint8_t *a = f + 14;
    if (n < 42 || be16(a) != 1 || be16(a + 2) != 0x0800 || be16(a + 6) != 1 ||
        memcmp(a + 24, my_ip, 4) != 0)
        return 0;
    swap_macs(f);
    a[7] = 2; /* reply */
    memcpy(a + 18, a + 8, 10);      /* target = the sender */
    memcpy(a + 8, my_mac, 6);
    memcpy(a + 14, my_ip, 4);
    return 1;
}

/* 1 when an ICMP echo request for us was turned into the reply. */
static int icmp(uint8_t *f, size_t n)
{
    uint8_t *ip = f + 14;
    if (n < 34 || (ip[0] >> 4) != 4 || ip[9] != 1 || memcmp(ip + 16, my_ip, 4) != 0)
        return 0;
    size_t ihl = (size_t)(ip[0] & 15) * 4, total = be16(ip + 2);
    if (ihl < 20 || total > n - 14 || total < ihl + 8 || checksum(ip, ihl) != 0)
        return 0;
    uint8_t *ic = ip + ihl;
    if (ic[0] != 8 || checksum(ic, total - ihl) != 0)
        return 0;
    swap_macs(f);
    memcpy(ip + 16, ip + 12, 4);
    memcpy(ip + 12, my_ip, 4);
    ip[8] = 64;
    ip[10] = ip[11] = 0;
    uint16_t c = checksum(ip, ihl);
    ip[10] = (uint8_t)(c >> 8), ip[11] = (uint8_t)c;
    ic[0] = 0; /* echo reply */
    ic[2] = ic[3] = 0;
    c = checksum(ic, total - ihl);
    ic[2] = (uint8_t)(c >> 8), ic[3] = (uint8_t)c;
    return 1;
}

int main(int argc, char **argv)
{
    printf("\n**** Solo5 standalone test_ping_serve ****\n\n");
    uint64_t h;
    struct s5_net_info ni;
    if (s5_net_acquire("service0", &h, &ni) != S5_OK) {
        printf("ABORT: no net device 'service0'\n");
        return 1;
    }
    memcpy(my_mac, ni.mac, 6);
    long limit = argc > 0 ? atoi(argv[0]) : 0;
    printf("Serving ping on 10.0.0.2, mac %x:%x:%x:%x:%x:%x, limit %d\n", my_mac[0],
           my_mac[1], my_mac[2], my_mac[3], my_mac[4], my_mac[5], (int)limit);
    long answered = 0;
    for (;;) {
        uint64_t ready = 0;
        s5_yield(sdk_clock_ns() + 1000000000ull, &ready);
        if (!(ready & (1ull << h)))
            continue;
        size_t n;
        while (s5_net_read(h, frame, sizeof frame, &n) == S5_OK) {
            uint16_t type = n >= 14 ? be16(frame + 12) : 0;
            int reply = (type == 0x0806 && arp(frame, n)) || (type == 0x0800 && icmp(frame, n));
            if (!reply)
                continue;
            if (s5_net_write(h, frame, n) != S5_OK) {
                printf("ABORT: net write failed\n");
                return 1;
            }
            if (type == 0x0800 && ++answered == limit) {
                printf("answered %d echo requests\nSUCCESS\n", (int)answered);
                return 0;
            }
        }
    }
}
