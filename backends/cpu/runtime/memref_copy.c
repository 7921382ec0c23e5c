/* Runtime support linked into every CPU subgraph .so (hcc owns it; no MLIR runtime library is needed).
 *
 * 1. memrefCopy: MLIR's strided copy (memref.copy of non-contiguous views, e.g. tensor.pad / insert_slice).
 *    Innermost unit-stride runs are copied with memcpy; dims that are contiguous in both views are merged. A copy of
 *    256 KiB or more is split along its outermost dim across the pool's threads; hcc_memcpy does the same for the
 *    contiguous copies that MLIR lowers to llvm.memcpy.
 * 2. _mlir_memref_to_llvm_{alloc,aligned_alloc,free}: the allocation hooks of
 *    `finalize-memref-to-llvm{use-generic-functions=1}`. Intermediate buffers are large and a model allocates
 *    the same sizes on every call; plain malloc hands big blocks back to the kernel (mmap/munmap), so every
 *    call page-faults them in again, and a time loop allocates its small temporaries at every step. A per-thread
 *    cache of 128 blocks (any size, matched exactly) keeps freed blocks for the next allocation.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* MLIR's unranked memref ABI: {rank, descriptor*}; descriptor = {alloc, aligned, offset, sizes[rank], strides[rank]}. */
typedef struct { int64_t rank; void *descriptor; } UnrankedMemRef;
typedef struct { char *allocated; char *aligned; int64_t offset; int64_t shape_and_strides[]; } RankedDesc;

typedef void (*hcc_task_fn)(void *ctx, int64_t task);
void hcc_parallel_for(int64_t tasks, hcc_task_fn fn, void *ctx);
int hcc_get_num_threads(void);

/* A copy of at least PARALLEL_COPY_BYTES bytes is split across the pool's threads (threadpool.c): a Concat or Pad of
 * a U-Net's feature maps moves megabytes, which one core copies at a fraction of the memory bandwidth. The size is
 * backends/cpu/toolchain.py's, which the generated code's inlined copies test too (lowering.parallel_copies). */
#ifndef PARALLEL_COPY_BYTES
#error "PARALLEL_COPY_BYTES comes from backends/cpu/toolchain.py (SUPPORT_CFLAGS)"
#endif
#define MAX_COPY_RANK 16

/* A strided copy after merging: `n` dims (outermost first) of sizes[] and element strides sstr[] / dstr[]. */
typedef struct {
  int64_t n, elem_size, sizes[MAX_COPY_RANK], sstr[MAX_COPY_RANK], dstr[MAX_COPY_RANK];
  char *sp, *dp;
  int64_t parts;
} StridedCopy;

/* `count` elements at element strides rs / rd: 4- and 8-byte elements as plain loads and stores (an interleaving
 * Concat writes every other float: a memcpy call per element cost ten times as much), others by memcpy. */
static void strided_run(char *dp, const char *sp, int64_t count, int64_t rs, int64_t rd, int64_t es) {
  if (es == 4) {
    uint32_t *d = (uint32_t *)dp;
    const uint32_t *s = (const uint32_t *)sp;
    for (int64_t i = 0; i < count; ++i) d[i * rd] = s[i * rs];
  } else if (es == 8) {
    uint64_t *d = (uint64_t *)dp;
    const uint64_t *s = (const uint64_t *)sp;
    for (int64_t i = 0; i < count; ++i) d[i * rd] = s[i * rs];
  } else {
    for (int64_t i = 0; i < count; ++i) memcpy(dp + i * rd * es, sp + i * rs * es, es);
  }
}

/* Indices [first, last) of the outermost dim; the innermost run with one memcpy when unit-stride in both views. */
static void copy_rows(const StridedCopy *c, int64_t first, int64_t last) {
  int64_t n = c->n, es = c->elem_size;
  int64_t run = c->sizes[n - 1], rs = c->sstr[n - 1], rd = c->dstr[n - 1];
  int contiguous = rs == 1 && rd == 1;
  if (n == 1) { /* one run: [first, last) of its elements */
    if (contiguous) memcpy(c->dp + first * es, c->sp + first * es, (last - first) * es);
    else strided_run(c->dp + first * rd * es, c->sp + first * rs * es, last - first, rs, rd, es);
    return;
  }
  int64_t outer = n - 1, idx[MAX_COPY_RANK] = {0};
  idx[0] = first;
  int64_t soff = first * c->sstr[0], doff = first * c->dstr[0];
  for (;;) {
    if (contiguous) {
      memcpy(c->dp + doff * es, c->sp + soff * es, run * es);
    } else {
      strided_run(c->dp + doff * es, c->sp + soff * es, run, rs, rd, es);
    }
    int64_t ax = outer - 1;
    for (; ax >= 0; --ax) {
      soff += c->sstr[ax]; doff += c->dstr[ax];
      if (++idx[ax] < (ax == 0 ? last : c->sizes[ax])) break;
      if (ax == 0) return; /* the outermost dim reached `last`: done */
      soff -= c->sstr[ax] * c->sizes[ax]; doff -= c->dstr[ax] * c->sizes[ax]; idx[ax] = 0;
    }
  }
}

static void copy_part(void *ctx, int64_t part) {
  const StridedCopy *c = ctx;
  int64_t length = c->sizes[0], first = length * part / c->parts, last = length * (part + 1) / c->parts;
  if (first < last) copy_rows(c, first, last);
}

void memrefCopy(int64_t elem_size, UnrankedMemRef *src, UnrankedMemRef *dst) {
  int64_t rank = src->rank;
  RankedDesc *s = (RankedDesc *)src->descriptor, *d = (RankedDesc *)dst->descriptor;
  char *sp = s->aligned + s->offset * elem_size, *dp = d->aligned + d->offset * elem_size;
  if (rank == 0) { memcpy(dp, sp, elem_size); return; }
  StridedCopy c = {.elem_size = elem_size, .sp = sp, .dp = dp, .parts = 1};
  int64_t n = 0, total = elem_size;
  for (int64_t i = 0; i < rank; ++i) {
    int64_t size = s->shape_and_strides[i];
    if (size == 0) return;
    if (size == 1) continue; /* unit dims do not move the pointers */
    total *= size;
    int64_t ss = s->shape_and_strides[rank + i], ds = d->shape_and_strides[rank + i];
    /* merge with the previous (outer) dim when both views are contiguous across the two */
    if (n > 0 && c.sstr[n - 1] == ss * size && c.dstr[n - 1] == ds * size) {
      c.sizes[n - 1] *= size; c.sstr[n - 1] = ss; c.dstr[n - 1] = ds;
      continue;
    }
    if (n == MAX_COPY_RANK) __builtin_trap(); /* ranks above 16 are never generated */
    c.sizes[n] = size; c.sstr[n] = ss; c.dstr[n] = ds;
    ++n;
  }
  if (n == 0) { memcpy(dp, sp, elem_size); return; }
  c.n = n;
  int threads = total >= PARALLEL_COPY_BYTES ? hcc_get_num_threads() : 1;
  c.parts = threads < c.sizes[0] ? threads : c.sizes[0];
  if (c.parts > 1) hcc_parallel_for(c.parts, copy_part, &c);
  else copy_rows(&c, 0, c.sizes[0]);
}

/* memcpy for the copies MLIR lowers to llvm.memcpy (contiguous views; lowering.py redirects those calls here):
 * large ones split across the pool's threads in cache-line-aligned parts. */
typedef struct { char *dst; const char *src; size_t bytes, part; } FlatCopy;

static void flat_part(void *ctx, int64_t part) {
  const FlatCopy *c = ctx;
  size_t first = (size_t)part * c->part;
  if (first < c->bytes) memcpy(c->dst + first, c->src + first, c->bytes - first < c->part ? c->bytes - first : c->part);
}

void hcc_memcpy(void *dst, const void *src, int64_t bytes) {
  int threads = bytes >= PARALLEL_COPY_BYTES ? hcc_get_num_threads() : 1;
  if (threads <= 1) { memcpy(dst, src, (size_t)bytes); return; }
  size_t part = (((size_t)bytes + threads - 1) / threads + 63) & ~(size_t)63;
  FlatCopy c = {dst, src, (size_t)bytes, part};
  hcc_parallel_for(((size_t)bytes + part - 1) / part, flat_part, &c);
}

/* ---- buffer cache ------------------------------------------------------------------------------------ */
#define HCC_HEADER 64          /* keeps the returned pointer 64-byte aligned; holds the block size */
#define HCC_CACHE_SLOTS 128
#define HCC_CACHE_MIN 0 /* every size: a time loop allocates its small temporaries every step (posix_memalign and free cost an LSTM 12%) */

typedef struct { size_t size; char *block; } Slot;
typedef struct { Slot slots[HCC_CACHE_SLOTS]; } Cache;

static pthread_key_t cache_key;
static pthread_once_t cache_once = PTHREAD_ONCE_INIT;

static void cache_destroy(void *p) {
  Cache *c = (Cache *)p;
  for (int i = 0; i < HCC_CACHE_SLOTS; ++i) free(c->slots[i].block);
  free(c);
}
static void cache_init(void) { pthread_key_create(&cache_key, cache_destroy); }

static Cache *cache_get(void) {
  pthread_once(&cache_once, cache_init);
  Cache *c = (Cache *)pthread_getspecific(cache_key);
  if (!c) {
    c = (Cache *)calloc(1, sizeof(Cache));
    if (c) pthread_setspecific(cache_key, c);
  }
  return c;
}

/* Block layout: [padding][size_t size][char *block] | returned pointer (aligned) ... */
static void *hcc_alloc_aligned(size_t size, size_t alignment) {
  if (alignment < HCC_HEADER) alignment = HCC_HEADER;
  if (size >= HCC_CACHE_MIN && alignment == HCC_HEADER) {
    Cache *c = cache_get();
    if (c) {
      for (int i = 0; i < HCC_CACHE_SLOTS; ++i) {
        if (c->slots[i].block && c->slots[i].size == size) {
          char *block = c->slots[i].block;
          c->slots[i].block = NULL;
          return block + HCC_HEADER;
        }
      }
    }
  }
  void *block = NULL;
  if (posix_memalign(&block, alignment, size + alignment) != 0) return NULL;
  char *ptr = (char *)block + alignment;
  ((size_t *)(ptr - 16))[0] = alignment == HCC_HEADER ? size : 0; /* 0: never cached */
  ((char **)(ptr - 8))[0] = (char *)block;
  return ptr;
}

void *_mlir_memref_to_llvm_alloc(size_t size) { return hcc_alloc_aligned(size, HCC_HEADER); }

void *_mlir_memref_to_llvm_aligned_alloc(size_t alignment, size_t size) { return hcc_alloc_aligned(size, alignment); }

void _mlir_memref_to_llvm_free(void *ptr) {
  if (!ptr) return;
  char *p = (char *)ptr;
  size_t size = ((size_t *)(p - 16))[0];
  char *block = ((char **)(p - 8))[0];
  if (size >= HCC_CACHE_MIN) {
    Cache *c = cache_get();
    if (c) {
      for (int i = 0; i < HCC_CACHE_SLOTS; ++i) {
        if (!c->slots[i].block) { c->slots[i].size = size; c->slots[i].block = block; return; }
      }
    }
  }
  free(block);
}
