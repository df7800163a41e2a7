#ifndef MEETPUNT_CZSTD_SHIM_H
#define MEETPUNT_CZSTD_SHIM_H
/* The collector's codec 4 writes bare frames (no magic number, no dictionary id) and reads their header with
   ZSTD_getFrameHeader_advanced; dictionary 3 was trained with ZDICT_optimizeTrainFromBuffer_fastCover. These
   are declared only for static linking, and Debian's libzstd.so.1 exports them (1.5.4). */
#define ZSTD_STATIC_LINKING_ONLY
#define ZDICT_STATIC_LINKING_ONLY
#include <zstd.h>
#include <zdict.h>
#endif
