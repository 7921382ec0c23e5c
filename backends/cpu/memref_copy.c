#include <stdint.h>
#include <string.h>
#include <stdlib.h>
/* MLIR's unranked memref ABI: {rank, descriptor*}; descriptor = {alloc, aligned, offset, sizes[rank], strides[rank]}. */
typedef struct { int64_t rank; void *descriptor; } UnrankedMemRef;
typedef struct { char *allocated; char *aligned; int64_t offset; int64_t shape_and_strides[]; } RankedDesc;
void memrefCopy(int64_t elem_size, UnrankedMemRef *src, UnrankedMemRef *dst) {
  int64_t rank = src->rank;
  RankedDesc *s = (RankedDesc *)src->descriptor, *d = (RankedDesc *)dst->descriptor;
  const int64_t *sizes = s->shape_and_strides, *sstr = s->shape_and_strides + rank, *dstr = d->shape_and_strides + rank;
  char *sp = s->aligned + s->offset * elem_size, *dp = d->aligned + d->offset * elem_size;
  if (rank == 0) { memcpy(dp, sp, elem_size); return; }
  for (int64_t i = 0; i < rank; ++i) if (sizes[i] == 0) return;
  int64_t idx[rank]; memset(idx, 0, sizeof(idx));
  int64_t soff = 0, doff = 0;
  for (;;) {
    memcpy(dp + doff * elem_size, sp + soff * elem_size, elem_size);
    int64_t ax = rank - 1;
    for (; ax >= 0; --ax) {
      soff += sstr[ax]; doff += dstr[ax];
      if (++idx[ax] < sizes[ax]) break;
      soff -= sstr[ax] * sizes[ax]; doff -= dstr[ax] * sizes[ax]; idx[ax] = 0;
    }
    if (ax < 0) return;
  }
}
