/* Runtime support linked into every CPU subgraph .so (hcc owns it; no MLIR runtime library is needed).
 *
 * 1. memrefCopy: MLIR's strided copy (memref.copy of non-contiguous views, e.g. tensor.pad / insert_slice).
 *    Innermost unit-stride runs are copied with memcpy; dims that are contiguous in both views are merged.
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

void memrefCopy(int64_t elem_size, UnrankedMemRef *src, UnrankedMemRef *dst) {
  int64_t rank = src->rank;
  RankedDesc *s = (RankedDesc *)src->descriptor, *d = (RankedDesc *)dst->descriptor;
  char *sp = s->aligned + s->offset * elem_size, *dp = d->aligned + d->offset * elem_size;
  if (rank == 0) { memcpy(dp, sp, elem_size); return; }
  int64_t sizes[rank > 0 ? rank : 1], sstr[rank > 0 ? rank : 1], dstr[rank > 0 ? rank : 1];
  int64_t n = 0;
  for (int64_t i = 0; i < rank; ++i) {
    int64_t size = s->shape_and_strides[i];
    if (size == 0) return;
    if (size == 1) continue; /* unit dims do not move the pointers */
    sizes[n] = size; sstr[n] = s->shape_and_strides[rank + i]; dstr[n] = d->shape_and_strides[rank + i];
    /* merge with the previous (outer) dim when both views are contiguous across the two */
    if (n > 0 && sstr[n - 1] == sstr[n] * sizes[n] && dstr[n - 1] == dstr[n] * sizes[n]) {
      sizes[n - 1] *= sizes[n]; sstr[n - 1] = sstr[n]; dstr[n - 1] = dstr[n];
      continue;
    }
    ++n;
  }
  if (n == 0) { memcpy(dp, sp, elem_size); return; }
  /* innermost run: one memcpy when unit-stride in both views, else element by element */
  int64_t run = sizes[n - 1], rs = sstr[n - 1], rd = dstr[n - 1];
  int contiguous = rs == 1 && rd == 1;
  int64_t outer = n - 1;
  int64_t idx[outer > 0 ? outer : 1];
  memset(idx, 0, sizeof(idx));
  int64_t soff = 0, doff = 0;
  for (;;) {
    if (contiguous) {
      memcpy(dp + doff * elem_size, sp + soff * elem_size, run * elem_size);
    } else {
      for (int64_t i = 0; i < run; ++i)
        memcpy(dp + (doff + i * rd) * elem_size, sp + (soff + i * rs) * elem_size, elem_size);
    }
    int64_t ax = outer - 1;
    for (; ax >= 0; --ax) {
      soff += sstr[ax]; doff += dstr[ax];
      if (++idx[ax] < sizes[ax]) break;
      soff -= sstr[ax] * sizes[ax]; doff -= dstr[ax] * sizes[ax]; idx[ax] = 0;
    }
    if (ax < 0) return;
  }
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
