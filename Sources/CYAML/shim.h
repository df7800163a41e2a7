#ifndef MEETPUNT_CYAML_SHIM_H
#define MEETPUNT_CYAML_SHIM_H
#include <yaml.h>
#endif
