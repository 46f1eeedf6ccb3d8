/*
 * tools/cmd_peaks.c — `tapegrad peaks`: this machine's ceilings, measured now. SGEMM
 * GFLOP/s at the GEMM shapes the forum layers run (the dense 3x3 im2col GEMM M = C,
 * K = 9C, N = H*W; the pointwise M = C, K = C, N = H*W) and at a square 1024^3, and the
 * copy bandwidth in GB/s (read + write bytes; 64 MiB buffers on the CPU, at least 8x the
 * L2 on a GPU). Each figure is the median of repeated runs after one warm-up; on CUDA
 * cuBLAS and the copy are timed with CUDA events over batches of calls on random
 * operands (cuda/bench.cu), and the GPU's name, SMs, L2 and clocks are printed. These are the ceilings `tapegrad forum` judges its
 * rates against (DESIGN §6: dense and pointwise in GFLOP/s against SGEMM, depthwise in
 * GB/s against copy).
 */
#include "commands.h"
#include "profile.h"

#include <string.h>

static const char *const devices[] = {"cpu", "cuda", NULL};

static void usage(FILE *f) {
    fprintf(f,
        "usage: tapegrad peaks [options]\n\n"
        "Measures this machine's ceilings: SGEMM GFLOP/s at the forum layers' GEMM shapes\n"
        "(dense 3x3: M=C, K=9C, N=H*W; pointwise: M=C, K=C, N=H*W) and at 1024^3, and the\n"
        "copy bandwidth (GB/s, read + write; 64 MiB buffers on the CPU, >= 8x L2 on a GPU);\n"
        "medians of repeats (CUDA: event-timed batches on random operands).\n\n"
        "  --size N          forum input size the shapes are taken from (default 64)\n"
        "  --channels C      forum channels (default 256)\n"
        "  --device cpu|cuda (default cpu; on CUDA: cublasSgemm and cudaMemcpyAsync)\n"
        "  --threads N       CPU threads (default: all cores)\n"
        "  --json            one JSON object on stdout; the table goes to stderr\n");
}

int cmd_peaks(int argc, char **argv) {
    const char *device = "cpu";
    int size = 64, channels = 256, threads = 0;
    bool json = false, help;
    const tool_opt opts[] = {
        {"--device", OPT_CHOICE, &device, 0, 0, devices},
        {"--size", OPT_INT, &size, 1, 16384, NULL},
        {"--channels", OPT_INT, &channels, 1, 65536, NULL},
        {"--threads", OPT_INT, &threads, 1, 4096, NULL},
        {"--json", OPT_FLAG, &json, 0, 0, NULL},
    };
    int rc = parse_options("peaks", argc, argv, opts, (int)(sizeof opts / sizeof opts[0]), &help);
    if (rc) return rc;
    if (help) {
        usage(stdout);
        return 0;
    }
    tool_set_threads(threads, false);
    tg_device dev = strcmp(device, "cuda") ? TG_DEVICE_CPU : TG_DEVICE_CUDA;
    if (dev == TG_DEVICE_CUDA && tg_cuda_check() != TG_OK) {
        fprintf(stderr, "tapegrad peaks: %s\n", tg_error_message());
        return 1;
    }
    peak_gemm shapes[PEAKS_MAX_SHAPES];
    int n = peaks_forum_shapes(shapes, size, channels, 1, INT64_MAX);
    peaks pk;
    if (peaks_measure(dev, shapes, n, 0.5, &pk) != TG_OK) {
        fprintf(stderr, "tapegrad peaks: %s\n", tg_error_message());
        return 1;
    }
    FILE *out = json ? stderr : stdout;
    fprintf(out, "forum layer shapes at size %d, %d channels\n", size, channels);
    peaks_print(&pk, out);
    if (json) {
        static const char *keys[] = {"sgemm_dense3x3_gflops", "sgemm_pointwise_gflops",
                                     "sgemm_square_gflops"};
        json_writer w;
        json_begin(&w, stdout);
        json_str(&w, "command", "peaks");
        json_str(&w, "device", device);
        if (pk.device_name[0]) json_str(&w, "gpu", pk.device_name);
        json_int(&w, "threads", tg_get_num_threads());
        json_int(&w, "size", size);
        json_int(&w, "channels", channels);
        for (int i = 0; i < pk.ngemm && i < 3; i++) json_num(&w, keys[i], pk.gemm[i].gflops);
        json_num(&w, "sgemm_peak_gflops", pk.sgemm_gflops);
        json_num(&w, "copy_gbps", pk.copy_gbps);
        json_int(&w, "copy_buffer_bytes", pk.copy_bytes);
        json_num(&w, "seconds", pk.seconds);
        json_end(&w);
    }
    return 0;
}
