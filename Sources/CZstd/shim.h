#ifndef MEETPUNT_CZSTD_SHIM_H
#define MEETPUNT_CZSTD_SHIM_H
#include <zstd.h>
/* Only for training dictionaries (scripts/storage/make-dictionary.sh): dictionary 3 was trained with
   ZDICT_optimizeTrainFromBuffer_fastCover, which zdict.h declares for static linking; Debian's libzstd.so.1
   exports it. Nothing that writes or reads stored rows uses an API outside zstd's stable one. */
#define ZDICT_STATIC_LINKING_ONLY
#include <zdict.h>
#endif
