#ifndef MEETPUNT_CZLIB_SHIM_H
#define MEETPUNT_CZLIB_SHIM_H
#include <zlib.h>
// deflateInit2 and inflateInit2 are macros over the _ functions.
static inline int czlib_deflate_init_gzip(z_stream *s, int level) {
    return deflateInit2(s, level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY);
}
static inline int czlib_inflate_init_gzip(z_stream *s) { return inflateInit2(s, 15 + 16); }
#endif
