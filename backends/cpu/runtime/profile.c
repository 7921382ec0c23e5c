/* Per-node time profile of a CPU subgraph (`hcc run --profile`, `hcc.runtime.load(bundle, profile=True)`).
 *
 * The compiler puts a call `hcc_prof_mark(i)` in front of the code of each ONNX node of the function (i indexes
 * the node names it embeds as `hcc_prof_nodes`) and `hcc_prof_mark(-1)` at the end: the time between two marks is
 * charged to the first one's node. Off by default, a mark costs one branch; on, one clock read (vDSO, ~20 ns).
 * The counters belong to the library (one calling thread at a time, like the entry itself).
 */
#include <stdint.h>
#include <string.h>
#include <time.h>

#define HCC_EXPORT __attribute__((visibility("default")))
#define PROF_SLOTS 4096

static int enabled;
static int64_t previous = -1;
static struct timespec since;
static double seconds[PROF_SLOTS];
static int64_t counts[PROF_SLOTS];

static double elapsed(const struct timespec *a, const struct timespec *b) {
  return (double)(b->tv_sec - a->tv_sec) + 1e-9 * (double)(b->tv_nsec - a->tv_nsec);
}

void hcc_prof_mark(int64_t node) {
  if (!enabled) return;
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  if (previous >= 0 && previous < PROF_SLOTS) {
    seconds[previous] += elapsed(&since, &now);
    counts[previous] += 1;
  }
  previous = node;
  since = now;
}

HCC_EXPORT void hcc_profile_enable(int on) {
  enabled = on;
  previous = -1;
}

/* Copy (then clear) the accumulated seconds of the first `n` nodes into `out`; returns how many slots exist. */
HCC_EXPORT int64_t hcc_profile_take(double *out, int64_t n) {
  if (n > PROF_SLOTS) n = PROF_SLOTS;
  if (out && n > 0) memcpy(out, seconds, sizeof(double) * (size_t)n);
  memset(seconds, 0, sizeof seconds);
  memset(counts, 0, sizeof counts);
  return PROF_SLOTS;
}
