#ifndef MEETPUNT_CZSTD_SHIM_H
#define MEETPUNT_CZSTD_SHIM_H
#include <zstd.h>
#include <zdict.h>
#endif
