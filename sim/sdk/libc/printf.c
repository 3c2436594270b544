/* The printf family. One formatter (format) writes into a sink: a caller's
 * buffer for snprintf, or a small buffer flushed to the console for printf,
 * so that one printf is usually one console write. */
#include "picosim.h"
#include "sdk_backend.h"

struct sink {
    char *buf;      /* destination */
    size_t size;    /* its capacity */
    size_t used;    /* bytes stored in buf so far */
    size_t total;   /* bytes produced (what printf returns) */
    int console;    /* flush to the console when full */
};

static void flush(struct sink *s)
{
    if (s->console && s->used) {
        sdk_backend_write(s->buf, s->used);
        s->used = 0;
    }
}

static void put(struct sink *s, char c)
{
    if (s->console && s->used == s->size)
        flush(s);
    if (s->used < s->size)
        s->buf[s->used++] = c;
    s->total++;
}

static void pad(struct sink *s, char c, int n)
{
    while (n-- > 0)
        put(s, c);
}

struct spec {
    int left;      /* '-' */
    int zero;      /* '0' */
    char sign;     /* '+', ' ' or 0 */
    int alt;       /* '#' */
    int width;
    int prec;      /* -1: none */
};

static void put_str(struct sink *s, const struct spec *sp, const char *str)
{
    if (!str)
        str = "(null)";
    int len = 0;
    while (str[len] && (sp->prec < 0 || len < sp->prec))
        len++;
    if (!sp->left)
        pad(s, ' ', sp->width - len);
    for (int i = 0; i < len; i++)
        put(s, str[i]);
    if (sp->left)
        pad(s, ' ', sp->width - len);
}

static void put_num(struct sink *s, const struct spec *sp, unsigned long long v,
                    int negative, unsigned base, int upper, const char *prefix)
{
    const char *digits = upper ? "0123456789ABCDEF" : "0123456789abcdef";
    char tmp[24];
    int n = 0;
    while (v) {
        tmp[n++] = digits[v % base];
        v /= base;
    }
    /* C: precision 0 prints nothing for the value 0. */
    int ndigits = n > sp->prec ? n : sp->prec;
    if (sp->prec < 0 && n == 0)
        ndigits = 1;
    char sign = negative ? '-' : sp->sign;
    int plen = 0;
    while (prefix[plen])
        plen++;
    int len = ndigits + plen + (sign != 0);
    int zero = sp->zero && !sp->left && sp->prec < 0;
    if (!sp->left && !zero)
        pad(s, ' ', sp->width - len);
    if (sign)
        put(s, sign);
    for (int i = 0; i < plen; i++)
        put(s, prefix[i]);
    if (zero)
        pad(s, '0', sp->width - len);
    pad(s, '0', ndigits - n);
    while (n)
        put(s, tmp[--n]);
    if (sp->left)
        pad(s, ' ', sp->width - len);
}

static int parse_int(const char **p)
{
    int v = 0;
    while (**p >= '0' && **p <= '9')
        v = v * 10 + (*(*p)++ - '0');
    return v;
}

static void format(struct sink *s, const char *fmt, va_list ap)
{
    for (; *fmt; fmt++) {
        if (*fmt != '%') {
            put(s, *fmt);
            continue;
        }
        fmt++;
        struct spec sp = { .prec = -1 };
        for (;; fmt++) {
            if (*fmt == '-') sp.left = 1;
            else if (*fmt == '0') sp.zero = 1;
            else if (*fmt == '+') sp.sign = '+';
            else if (*fmt == ' ') { if (!sp.sign) sp.sign = ' '; }
            else if (*fmt == '#') sp.alt = 1;
            else break;
        }
        if (*fmt == '*') {
            sp.width = va_arg(ap, int);
            if (sp.width < 0) {
                sp.left = 1;
                sp.width = -sp.width;
            }
            fmt++;
        } else {
            sp.width = parse_int(&fmt);
        }
        if (*fmt == '.') {
            fmt++;
            if (*fmt == '*') {
                sp.prec = va_arg(ap, int);
                if (sp.prec < 0)
                    sp.prec = -1;
                fmt++;
            } else {
                sp.prec = parse_int(&fmt);
            }
        }
        int size = 0; /* -2 hh, -1 h, 0 int, 1 long, 2 long long */
        for (;; fmt++) {
            if (*fmt == 'h') size--;
            else if (*fmt == 'l') size++;
            else if (*fmt == 'z' || *fmt == 'j' || *fmt == 't') size = 1;
            else break;
        }
        unsigned long long u;
        switch (*fmt) {
        case 'd':
        case 'i': {
            long long v = size >= 2 ? va_arg(ap, long long)
                        : size == 1 ? va_arg(ap, long) : va_arg(ap, int);
            if (size == -1) v = (short)v;
            if (size <= -2) v = (signed char)v;
            u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
            put_num(s, &sp, u, v < 0, 10, 0, "");
            break;
        }
        case 'u': case 'x': case 'X': case 'o':
            u = size >= 2 ? va_arg(ap, unsigned long long)
              : size == 1 ? va_arg(ap, unsigned long) : va_arg(ap, unsigned);
            if (size == -1) u = (unsigned short)u;
            if (size <= -2) u = (unsigned char)u;
            sp.sign = 0;
            if (*fmt == 'u')
                put_num(s, &sp, u, 0, 10, 0, "");
            else if (*fmt == 'o')
                put_num(s, &sp, u, 0, 8, 0, sp.alt && u ? "0" : "");
            else
                put_num(s, &sp, u, 0, 16, *fmt == 'X',
                        sp.alt && u ? (*fmt == 'X' ? "0X" : "0x") : "");
            break;
        case 'p': {
            void *p = va_arg(ap, void *);
            sp.sign = 0;
            if (p)
                put_num(s, &sp, (uintptr_t)p, 0, 16, 0, "0x");
            else
                put_str(s, &(struct spec){ .left = sp.left, .width = sp.width, .prec = -1 },
                        "(nil)");
            break;
        }
        case 's':
            put_str(s, &sp, va_arg(ap, const char *));
            break;
        case 'c': {
            char c = (char)va_arg(ap, int);
            if (!sp.left) pad(s, ' ', sp.width - 1);
            put(s, c);
            if (sp.left) pad(s, ' ', sp.width - 1);
            break;
        }
        case '%':
            put(s, '%');
            break;
        case '\0':
            return; /* a lone '%' at the end */
        default:    /* unknown conversion: print it as written */
            put(s, '%');
            put(s, *fmt);
            break;
        }
    }
}

int vsnprintf(char *buf, size_t size, const char *fmt, va_list ap)
{
    struct sink s = { .buf = buf, .size = size ? size - 1 : 0 };
    format(&s, fmt, ap);
    if (size)
        buf[s.used] = '\0';
    return (int)s.total;
}

int snprintf(char *buf, size_t size, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, size, fmt, ap);
    va_end(ap);
    return n;
}

int vprintf(const char *fmt, va_list ap)
{
    char buf[256];
    struct sink s = { .buf = buf, .size = sizeof buf, .console = 1 };
    format(&s, fmt, ap);
    flush(&s);
    return (int)s.total;
}

int printf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vprintf(fmt, ap);
    va_end(ap);
    return n;
}

int puts(const char *str)
{
    return printf("%s\n", str) < 0 ? -1 : 0;
}

int putchar(int c)
{
    char ch = (char)c;
    sdk_backend_write(&ch, 1);
    return (unsigned char)ch;
}
