/*
 * fuzz/replay_main.c — a plain driver for a libFuzzer target, for CI without clang's
 * libFuzzer: replays every file of a corpus directory, then feeds random inputs for a
 * bounded time. Any crash, sanitizer report or abort() in the target fails the run.
 *
 *   fuzz_api_replay CORPUS_DIR SECONDS [SEED]
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static uint64_t next(uint64_t *s) { /* splitmix64 */
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s CORPUS_DIR SECONDS [SEED]\n", argv[0]);
        return 2;
    }
    double secs = atof(argv[2]);
    uint64_t seed = argc > 3 ? strtoull(argv[3], NULL, 10) : (uint64_t)time(NULL);
    const uint64_t seed0 = seed;
    long replayed = 0, random_inputs = 0;
    DIR *d = opendir(argv[1]);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d))) {
            if (e->d_name[0] == '.') continue;
            char path[4096];
            snprintf(path, sizeof path, "%s/%s", argv[1], e->d_name);
            FILE *f = fopen(path, "rb");
            if (!f) continue;
            uint8_t buf[4096];
            size_t n = fread(buf, 1, sizeof buf, f);
            fclose(f);
            LLVMFuzzerTestOneInput(buf, n);
            replayed++;
        }
        closedir(d);
    }
    double t0 = now();
    uint8_t buf[256];
    while (now() - t0 < secs) {
        size_t n = 1 + next(&seed) % sizeof buf;
        for (size_t i = 0; i < n; i++) buf[i] = (uint8_t)next(&seed);
        LLVMFuzzerTestOneInput(buf, n);
        random_inputs++;
    }
    printf("fuzz replay: %ld corpus inputs, %ld random inputs in %.0f s (seed %llu), no "
           "failure\n", replayed, random_inputs, secs, (unsigned long long)seed0);
    return 0;
}
