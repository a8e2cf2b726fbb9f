// Times whisper_full on a raw f32 16 kHz clip with the settings Dormouse's engine uses
// (beam 3, patience -1, language given, no context, suppress blank/nst, no-speech 0.2,
// flash attention as asked, whisper.cpp's default thread count): one warm-up, then RUNS runs.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "whisper.h"

static double now_ms(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec * 1e3 + t.tv_nsec / 1e6; }
static int cmp(const void *a, const void *b) { double x = *(const double *)a, y = *(const double *)b; return (x > y) - (x < y); }
static void quiet(enum ggml_log_level l, const char *t, void *u) { (void)l; (void)t; (void)u; }

int main(int argc, char **argv) {
    if (argc < 5) { fprintf(stderr, "usage: harness MODEL CLIP.f32 LANG FLASH(0|1) [RUNS]\n"); return 2; }
    int runs = argc > 5 ? atoi(argv[5]) : 5;
    FILE *f = fopen(argv[2], "rb"); if (!f) { perror(argv[2]); return 1; }
    fseek(f, 0, SEEK_END); long bytes = ftell(f); fseek(f, 0, SEEK_SET);
    int n = (int)(bytes / 4); float *pcm = malloc(bytes);
    if (fread(pcm, 4, n, f) != (size_t)n) { fprintf(stderr, "short read\n"); return 1; } fclose(f);
    whisper_log_set(quiet, NULL);
    struct whisper_context_params cp = whisper_context_default_params();
    cp.use_gpu = false; cp.flash_attn = atoi(argv[4]) != 0;
    struct whisper_context *ctx = whisper_init_from_file_with_params(argv[1], cp);
    if (!ctx) { fprintf(stderr, "load failed\n"); return 1; }
    struct whisper_full_params p = whisper_full_default_params(WHISPER_SAMPLING_BEAM_SEARCH);
    p.beam_search.beam_size = 3; p.beam_search.patience = -1.0f;
    p.language = strcmp(argv[3], "auto") == 0 ? NULL : argv[3]; p.detect_language = false;
    p.translate = false; p.print_special = false; p.print_progress = false; p.print_realtime = false;
    p.print_timestamps = false; p.suppress_blank = true; p.suppress_nst = true;
    p.no_speech_thold = 0.2f; p.no_context = true;
    double t[64], first = 0; if (runs > 64) runs = 64;
    for (int r = -1; r < runs; r++) {
        double s = now_ms();
        if (whisper_full(ctx, p, pcm, n) != 0) { fprintf(stderr, "whisper_full failed\n"); return 1; }
        if (r >= 0) t[r] = now_ms() - s; else first = now_ms() - s;
    }
    qsort(t, runs, sizeof t[0], cmp);
    printf("threads %d  first call %.0f ms  median %.0f ms  min %.0f ms  max %.0f ms  text:", p.n_threads, first, t[runs / 2], t[0], t[runs - 1]);
    for (int i = 0; i < whisper_full_n_segments(ctx); i++) printf("%s", whisper_full_get_segment_text(ctx, i));
    struct whisper_timings *tm = whisper_get_timings(ctx);
    if (tm) printf("\n    per call: encode %.0f ms, prompt %.1f ms, batch decode %.1f ms, sampling %.2f ms", tm->encode_ms, tm->prompt_ms, tm->batchd_ms, tm->sample_ms);
    printf("\n");
    return 0;
}
