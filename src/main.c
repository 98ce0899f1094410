/* Command line: run, check, version. */
#include <stdio.h>
#include <string.h>

#include "base/log.h"

#ifndef BW_VERSION
#define BW_VERSION "0.1.0-dev"
#endif

static int usage(FILE *out)
{
    fprintf(out, "usage: bulwark run -c FILE | check -c FILE | version\n");
    return 2;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return usage(stderr);
    if (strcmp(argv[1], "version") == 0) {
        printf("bulwark %s\n", BW_VERSION);
        return 0;
    }
    return usage(stderr);
}
