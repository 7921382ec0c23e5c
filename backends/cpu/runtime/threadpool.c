/* A small thread pool linked into every CPU subgraph .so (the bundle ships it: no OpenMP or MLIR runtime to install).
 *
 * hcc_parallel_for(n, fn, ctx) runs fn(ctx, i) for i in [0, n) on the pool's threads and the calling thread, and
 * returns when all are done. Tasks are handed out by an atomic ticket (job generation, next index), so uneven tasks
 * balance themselves, and the caller waits for the tasks, not for the workers: a worker that another process keeps
 * off its core simply finds the job over when it wakes (waiting for every worker made 2 threads slower than 1 on a
 * busy machine).
 * Workers sleep on a condition variable between calls (they spin briefly first: back-to-back kernels of one
 * inference arrive microseconds apart). The thread count is hcc_set_num_threads(n) (the runtime calls it with
 * `threads=`), default: the CPUs this process may run on. A forked child starts without workers and makes new ones.
 * Nested calls (a task that calls hcc_parallel_for) run serially in the calling thread, and so does a job started on
 * another thread while one is running (the pool has one job slot).
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>

#define HCC_EXPORT __attribute__((visibility("default")))
#define MAX_THREADS 256
#define CLOSED 0xffffffffULL /* ticket index of a job being set up: no task can be taken */
#define SPIN_ROUNDS 4000 /* x86 `pause` rounds, about 0.1-0.5 ms, before sleeping */

typedef void (*hcc_task_fn)(void *ctx, int64_t task);

typedef struct {
  pthread_mutex_t lock;
  pthread_cond_t wake, done;
  pthread_t threads[MAX_THREADS];
  int started;            /* worker threads running (the caller is one more) */
  int wanted;             /* total threads requested (0: not set yet) */
  atomic_long generation; /* bumped per job: workers wait for a new one */
  atomic_ullong ticket;   /* (generation << 32) | next task index of the current job */
  atomic_long finished;   /* tasks of the current job done */
  int sleeping;           /* the caller waits on `done` (under lock) */
  atomic_llong tasks;     /* of the current job */
  hcc_task_fn fn;
  void *ctx;
  int stop;
  atomic_flag busy; /* a job is running: a caller on another thread runs its own job alone */
} Pool;

static Pool pool = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, PTHREAD_COND_INITIALIZER, .busy = ATOMIC_FLAG_INIT};
static __thread int in_task;

static int default_threads(void) {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0) {
    int n = CPU_COUNT(&set);
    return n > 0 ? n : 1;
  }
  return 1;
}

/* Take and run tasks of job `gen` until none is left (or a newer job has replaced it). A task's fn and ctx are read
 * after its ticket is taken: the job cannot end (nor its fields change) while one of its tasks is unfinished. */
static void run_tasks(long gen) {
  in_task = 1;
  for (;;) {
    unsigned long long t = atomic_load(&pool.ticket);
    if ((t >> 32) != ((unsigned long long)gen & 0xffffffffULL) || (int64_t)(t & 0xffffffffULL) >= atomic_load(&pool.tasks)) break;
    if (!atomic_compare_exchange_weak(&pool.ticket, &t, t + 1)) continue;
    int64_t tasks = atomic_load(&pool.tasks); /* read before the last task is counted: a new job may start then */
    pool.fn(pool.ctx, (int64_t)(t & 0xffffffffULL));
    if (atomic_fetch_add(&pool.finished, 1) + 1 == tasks) {
      pthread_mutex_lock(&pool.lock);
      if (pool.sleeping) pthread_cond_signal(&pool.done);
      pthread_mutex_unlock(&pool.lock);
    }
  }
  in_task = 0;
}

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#else
  sched_yield();
#endif
}

static void *worker(void *arg) {
  long seen = (long)(intptr_t)arg; /* the generation when this worker was made: the next job is for it */
  for (;;) {
    long gen = seen;
    for (int spin = 0; spin < SPIN_ROUNDS && (gen = atomic_load(&pool.generation)) == seen; ++spin) cpu_relax();
    if (gen == seen) {
      pthread_mutex_lock(&pool.lock);
      while ((gen = atomic_load(&pool.generation)) == seen && !pool.stop) pthread_cond_wait(&pool.wake, &pool.lock);
      pthread_mutex_unlock(&pool.lock);
    }
    if (pool.stop) return NULL;
    seen = gen;
    run_tasks(gen);
  }
}

static void after_fork_in_child(void) {
  /* the workers did not survive fork(): start again lazily with fresh synchronisation objects */
  pthread_mutex_init(&pool.lock, NULL);
  pthread_cond_init(&pool.wake, NULL);
  pthread_cond_init(&pool.done, NULL);
  pool.started = 0;
  pool.stop = 0;
}

static void ensure_workers(void) {
  static int registered;
  if (!registered) {
    pthread_atfork(NULL, NULL, after_fork_in_child);
    registered = 1;
  }
  if (pool.wanted == 0) pool.wanted = default_threads();
  int workers = pool.wanted - 1;
  if (workers > MAX_THREADS) workers = MAX_THREADS;
  while (pool.started < workers) {
    void *generation = (void *)(intptr_t)atomic_load(&pool.generation);
    if (pthread_create(&pool.threads[pool.started], NULL, worker, generation) != 0) {
      pool.wanted = pool.started + 1; /* run with what we have */
      break;
    }
    pool.started++;
  }
}

static void stop_workers(void) {
  pthread_mutex_lock(&pool.lock);
  pool.stop = 1;
  pthread_cond_broadcast(&pool.wake);
  pthread_mutex_unlock(&pool.lock);
  for (int i = 0; i < pool.started; ++i) pthread_join(pool.threads[i], NULL);
  pool.started = 0;
  pool.stop = 0;
}

/* Set the number of threads (the calling thread included); n <= 0 means all CPUs of this process. */
HCC_EXPORT void hcc_set_num_threads(int n) {
  if (n <= 0) n = default_threads();
  if (n > MAX_THREADS + 1) n = MAX_THREADS + 1;
  while (atomic_flag_test_and_set(&pool.busy)) cpu_relax(); /* not while a job of another thread runs */
  if (pool.started > n - 1) stop_workers();
  pool.wanted = n;
  atomic_flag_clear(&pool.busy);
}

HCC_EXPORT int hcc_get_num_threads(void) { return pool.wanted ? pool.wanted : default_threads(); }

void hcc_parallel_for(int64_t tasks, hcc_task_fn fn, void *ctx) {
  if (tasks <= 0) return;
  if (pool.wanted == 0) pool.wanted = default_threads();
  if (tasks == 1 || in_task || pool.wanted <= 1) {
    for (int64_t i = 0; i < tasks; ++i) fn(ctx, i);
    return;
  }
  /* one job at a time: the pool has one job slot, so a caller on another thread (two sessions of one bundle run
     from two Python threads) runs its tasks itself while the pool is taken */
  if (tasks >= (int64_t)CLOSED || atomic_flag_test_and_set(&pool.busy)) { /* the ticket holds 32 bits of index */
    for (int64_t i = 0; i < tasks; ++i) fn(ctx, i);
    return;
  }
  ensure_workers();
  if (pool.started == 0) {
    for (int64_t i = 0; i < tasks; ++i) fn(ctx, i);
    atomic_flag_clear(&pool.busy);
    return;
  }
  long gen = atomic_load(&pool.generation) + 1;
  unsigned long long stamp = ((unsigned long long)gen & 0xffffffffULL) << 32;
  /* Close the ticket first: a worker still holding the previous job's ticket value (and about to compare its index
     with `tasks`, which is changing now) must fail its compare-and-swap, not claim a task of the new job early. */
  atomic_store(&pool.ticket, stamp | CLOSED);
  pool.fn = fn;
  pool.ctx = ctx;
  atomic_store(&pool.tasks, tasks);
  atomic_store(&pool.finished, 0);
  atomic_store(&pool.ticket, stamp); /* publishes fn, ctx, tasks */
  pthread_mutex_lock(&pool.lock);
  atomic_store(&pool.generation, gen);
  pthread_cond_broadcast(&pool.wake);
  pthread_mutex_unlock(&pool.lock);
  run_tasks(gen);
  for (int spin = 0; spin < SPIN_ROUNDS && atomic_load(&pool.finished) < tasks; ++spin) cpu_relax();
  if (atomic_load(&pool.finished) < tasks) {
    pthread_mutex_lock(&pool.lock);
    pool.sleeping = 1;
    while (atomic_load(&pool.finished) < tasks) pthread_cond_wait(&pool.done, &pool.lock);
    pool.sleeping = 0;
    pthread_mutex_unlock(&pool.lock);
  }
  atomic_flag_clear(&pool.busy);
}
