/* The part of the OpenMP runtime ABI (`__kmpc_*`, LLVM's libomp entry points) that MLIR's OpenMP lowering calls,
 * implemented on hcc's own thread pool (threadpool.c), so that the generated loops run on every core with nothing
 * installed on the target and no libomp shipped.
 *
 * hcc marks only the outer loop of an elementwise or reduction op as parallel (backends/cpu/schedule.py); MLIR turns
 * it into `omp.parallel { omp.wsloop }` (convert-scf-to-openmp) and LLVM's OpenMPIRBuilder outlines the body into a
 * "microtask" called through __kmpc_fork_call, which splits the iterations with __kmpc_for_static_init_*. Here a
 * fork is one hcc_parallel_for job of as many tasks as the pool has threads; task t plays "thread t" of the team and
 * takes the t-th contiguous block of the iterations. A task never waits for another, so a team runs correctly on
 * fewer threads, or serially in the caller (a nested fork, a job started while the pool is busy). Each iteration is
 * computed by one task in the loop's own order: results are identical for every thread count.
 *
 * Supported, and all that the lowering of such a loop emits: a static schedule without a chunk (schedtype 34),
 * fork calls of up to 8 shared arguments (the builder packs the captured values into one struct), and the barrier
 * at the end of the worksharing loop, which is the last thing in the region: the fork's join already waits for every
 * task, so the barrier has nothing to do. Reductions, critical sections, dynamic schedules and nested teams are not
 * implemented and never generated. Every symbol here is hidden (-fvisibility=hidden): each .so binds to its own
 * copy at link time, never to a libomp that the process may have loaded. */
#include <stdarg.h>
#include <stdint.h>

typedef void (*hcc_task_fn)(void *ctx, int64_t task);
void hcc_parallel_for(int64_t tasks, hcc_task_fn fn, void *ctx);
int hcc_get_num_threads(void);

#define MAX_SHARED_ARGS 8
#define KMP_SCH_STATIC 34

typedef void (*kmpc_microtask)(int32_t *gtid, int32_t *btid, ...);

typedef struct {
  kmpc_microtask fn;
  int32_t argc;
  void *args[MAX_SHARED_ARGS];
  int32_t team;
} Fork;

/* The calling task's place in its team: read by __kmpc_global_thread_num and the static schedule. */
static __thread int32_t team_rank;
static __thread int32_t team_size = 1;

static void run_member(void *ctx, int64_t task) {
  Fork *fork = ctx;
  int32_t saved_rank = team_rank, saved_size = team_size;
  int32_t gtid = (int32_t)task, btid = (int32_t)task;
  team_rank = (int32_t)task;
  team_size = fork->team;
  void **a = fork->args;
  switch (fork->argc) {
    case 0: fork->fn(&gtid, &btid); break;
    case 1: fork->fn(&gtid, &btid, a[0]); break;
    case 2: fork->fn(&gtid, &btid, a[0], a[1]); break;
    case 3: fork->fn(&gtid, &btid, a[0], a[1], a[2]); break;
    case 4: fork->fn(&gtid, &btid, a[0], a[1], a[2], a[3]); break;
    case 5: fork->fn(&gtid, &btid, a[0], a[1], a[2], a[3], a[4]); break;
    case 6: fork->fn(&gtid, &btid, a[0], a[1], a[2], a[3], a[4], a[5]); break;
    case 7: fork->fn(&gtid, &btid, a[0], a[1], a[2], a[3], a[4], a[5], a[6]); break;
    default: fork->fn(&gtid, &btid, a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7]); break;
  }
  team_rank = saved_rank;
  team_size = saved_size;
}

void __kmpc_fork_call(void *loc, int32_t argc, kmpc_microtask fn, ...) {
  (void)loc;
  Fork fork = {.fn = fn, .argc = argc};
  if (argc < 0 || argc > MAX_SHARED_ARGS) __builtin_trap(); /* never generated: see the header */
  va_list ap;
  va_start(ap, fn);
  for (int32_t i = 0; i < argc; ++i) fork.args[i] = va_arg(ap, void *);
  va_end(ap);
  fork.team = team_size > 1 ? 1 : hcc_get_num_threads(); /* a fork inside a team member runs as a team of one */
  if (fork.team < 1) fork.team = 1;
  hcc_parallel_for(fork.team, run_member, &fork);
}

int32_t __kmpc_global_thread_num(void *loc) {
  (void)loc;
  return team_rank;
}

/* Block `rank` of `size` contiguous blocks of the iterations lower..upper (inclusive, step `incr`); an empty block
 * has lower > upper. The first (trip % size) blocks are one iteration longer. */
#define STATIC_INIT(NAME, T, UT)                                                                                  \
  void NAME(void *loc, int32_t gtid, int32_t schedtype, int32_t *plastiter, T *plower, T *pupper, T *pstride,   \
            T incr, T chunk) {                                                                                  \
    (void)loc;                                                                                                  \
    (void)gtid;                                                                                                 \
    (void)chunk;                                                                                                \
    if (schedtype != KMP_SCH_STATIC || incr == 0) __builtin_trap(); /* never generated: see the header */        \
    UT trip = incr > 0 ? (UT)(*pupper - *plower) / (UT)incr + 1 : (UT)(*plower - *pupper) / (UT)(-incr) + 1;   \
    if ((incr > 0 && *pupper < *plower) || (incr < 0 && *pupper > *plower)) trip = 0;                          \
    UT size = (UT)team_size, rank = (UT)team_rank;                                                              \
    UT base = trip / size, extra = trip % size;                                                                  \
    UT first = rank * base + (rank < extra ? rank : extra);                                                      \
    UT count = base + (rank < extra ? 1 : 0);                                                                    \
    T lower = *plower;                                                                                           \
    *plower = lower + (T)first * incr;                                                                           \
    *pupper = *plower + ((T)count - 1) * incr;                                                                   \
    if (plastiter) *plastiter = count > 0 && first + count == trip;                                             \
    *pstride = (T)trip * incr;                                                                                   \
  }

STATIC_INIT(__kmpc_for_static_init_4, int32_t, uint32_t)
STATIC_INIT(__kmpc_for_static_init_4u, uint32_t, uint32_t)
STATIC_INIT(__kmpc_for_static_init_8, int64_t, uint64_t)
STATIC_INIT(__kmpc_for_static_init_8u, uint64_t, uint64_t)

void __kmpc_for_static_fini(void *loc, int32_t gtid) {
  (void)loc;
  (void)gtid;
}

void __kmpc_barrier(void *loc, int32_t gtid) {
  (void)loc;
  (void)gtid;
}
