/* A stand-in for libcuda.so.1 on machines without a GPU (tests only).
 *
 * Implements the CUDA driver API functions hcc's ctypes driver calls, on host memory:
 *  - "device memory" is malloc'd; CUdeviceptr values are host addresses; allocations are tracked so that kernel
 *    pointer parameters, copies and frees are validated (an invalid one fails like the real driver would);
 *  - cuModuleLoadData accepts a cubin (ELF, e_machine 190) or NUL-terminated PTX; cuModuleGetFunction finds `.entry NAME`
 *    in PTX or the `.text.NAME` section name in a cubin (CUDA_ERROR_NOT_FOUND otherwise);
 *  - cuLaunchKernel cannot run GPU code: it records the launch (kernel, grid, block, shared bytes, parameter values)
 *    and, when an emulator library built by tests/backends/gpu/emulate.py exports hccemu_<kernel>, runs that host version
 *    of the kernel on the parameters. Parameter kinds come from the PTX `.entry` declaration or the emulator's
 *    hccemu_<kernel>_sig.
 *
 * Environment (read at each call): HCC_STUB_LOG (append one line per call to this file), HCC_STUB_EMULATOR
 * (':'-separated emulator libraries), HCC_STUB_CC ("9.0"), HCC_STUB_DEVICES (count, default 1), HCC_STUB_INIT_ERROR
 * (cuInit returns this code), HCC_STUB_FAIL_KERNEL (launching this kernel returns CUDA_ERROR_LAUNCH_FAILED),
 * HCC_STUB_MEM_LIMIT (bytes; cuMemAlloc beyond it returns CUDA_ERROR_OUT_OF_MEMORY).
 */
#include <dlfcn.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef int CUresult;
typedef uint64_t CUdeviceptr;

enum {
    CUDA_SUCCESS = 0, CUDA_ERROR_INVALID_VALUE = 1, CUDA_ERROR_OUT_OF_MEMORY = 2, CUDA_ERROR_NOT_INITIALIZED = 3,
    CUDA_ERROR_NO_DEVICE = 100, CUDA_ERROR_INVALID_DEVICE = 101, CUDA_ERROR_INVALID_IMAGE = 200,
    CUDA_ERROR_INVALID_CONTEXT = 201, CUDA_ERROR_INVALID_HANDLE = 400, CUDA_ERROR_NOT_FOUND = 500,
    CUDA_ERROR_LAUNCH_FAILED = 719
};

static int initialized = 0;
static int ctx_current = 0;
static const char CTX_TOKEN[] = "hcc-stub-context";

/* -- logging ------------------------------------------------------------------------------------------------- */
static void logf_(const char *fmt, ...) {
    const char *path = getenv("HCC_STUB_LOG");
    if (!path || !*path) return;
    FILE *f = fopen(path, "a");
    if (!f) return;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(f, fmt, ap);
    va_end(ap);
    fputc('\n', f);
    fclose(f);
}

/* -- allocations --------------------------------------------------------------------------------------------- */
typedef struct { uint64_t ptr; size_t size; } Alloc;
static Alloc *allocs = NULL;
static size_t n_allocs = 0, cap_allocs = 0, live_bytes = 0, total_allocs = 0;

static Alloc *find_alloc(uint64_t ptr, size_t size) {  /* the allocation containing [ptr, ptr+size) */
    for (size_t i = 0; i < n_allocs; i++)
        if (ptr >= allocs[i].ptr && ptr + size <= allocs[i].ptr + allocs[i].size) return &allocs[i];
    return NULL;
}

size_t hccstub_live_bytes(void) { return live_bytes; }
size_t hccstub_live_allocations(void) { return n_allocs; }
size_t hccstub_total_allocations(void) { return total_allocs; }

/* -- error strings ------------------------------------------------------------------------------------------- */
static const struct { int code; const char *name, *text; } ERRORS[] = {
    {0, "CUDA_SUCCESS", "no error"},
    {1, "CUDA_ERROR_INVALID_VALUE", "invalid argument"},
    {2, "CUDA_ERROR_OUT_OF_MEMORY", "out of memory"},
    {3, "CUDA_ERROR_NOT_INITIALIZED", "initialization error"},
    {100, "CUDA_ERROR_NO_DEVICE", "no CUDA-capable device is detected"},
    {101, "CUDA_ERROR_INVALID_DEVICE", "invalid device ordinal"},
    {200, "CUDA_ERROR_INVALID_IMAGE", "device kernel image is invalid"},
    {201, "CUDA_ERROR_INVALID_CONTEXT", "invalid device context"},
    {400, "CUDA_ERROR_INVALID_HANDLE", "invalid resource handle"},
    {500, "CUDA_ERROR_NOT_FOUND", "named symbol not found"},
    {719, "CUDA_ERROR_LAUNCH_FAILED", "unspecified launch failure"},
};

CUresult cuGetErrorName(CUresult code, const char **out) {
    for (size_t i = 0; i < sizeof ERRORS / sizeof ERRORS[0]; i++)
        if (ERRORS[i].code == code) { *out = ERRORS[i].name; return CUDA_SUCCESS; }
    *out = NULL;
    return CUDA_ERROR_INVALID_VALUE;
}

CUresult cuGetErrorString(CUresult code, const char **out) {
    for (size_t i = 0; i < sizeof ERRORS / sizeof ERRORS[0]; i++)
        if (ERRORS[i].code == code) { *out = ERRORS[i].text; return CUDA_SUCCESS; }
    *out = NULL;
    return CUDA_ERROR_INVALID_VALUE;
}

/* -- init, devices, contexts --------------------------------------------------------------------------------- */
static int device_count(void) {
    const char *s = getenv("HCC_STUB_DEVICES");
    return s && *s ? atoi(s) : 1;
}

CUresult cuInit(unsigned flags) {
    const char *err = getenv("HCC_STUB_INIT_ERROR");
    logf_("cuInit flags=%u", flags);
    if (err && *err) return atoi(err);
    initialized = 1;
    return CUDA_SUCCESS;
}

CUresult cuDriverGetVersion(int *v) { *v = 13000; return CUDA_SUCCESS; }

CUresult cuDeviceGetCount(int *n) {
    if (!initialized) return CUDA_ERROR_NOT_INITIALIZED;
    *n = device_count();
    return CUDA_SUCCESS;
}

CUresult cuDeviceGet(int *dev, int ordinal) {
    if (!initialized) return CUDA_ERROR_NOT_INITIALIZED;
    if (ordinal < 0 || ordinal >= device_count()) return CUDA_ERROR_INVALID_DEVICE;
    *dev = ordinal;
    return CUDA_SUCCESS;
}

CUresult cuDeviceGetAttribute(int *value, int attribute, int dev) {
    if (!initialized) return CUDA_ERROR_NOT_INITIALIZED;
    if (dev < 0 || dev >= device_count()) return CUDA_ERROR_INVALID_DEVICE;
    const char *cc = getenv("HCC_STUB_CC");
    int major = 9, minor = 0;
    if (cc && *cc) sscanf(cc, "%d.%d", &major, &minor);
    if (attribute == 75) *value = major;
    else if (attribute == 76) *value = minor;
    else return CUDA_ERROR_INVALID_VALUE;
    return CUDA_SUCCESS;
}

CUresult cuDeviceGetName(char *name, int len, int dev) {
    snprintf(name, (size_t)len, "hcc stub GPU %d", dev);
    return CUDA_SUCCESS;
}

CUresult cuDevicePrimaryCtxRetain(void **ctx, int dev) {
    if (!initialized) return CUDA_ERROR_NOT_INITIALIZED;
    if (dev < 0 || dev >= device_count()) return CUDA_ERROR_INVALID_DEVICE;
    *ctx = (void *)(CTX_TOKEN + dev);
    logf_("cuDevicePrimaryCtxRetain dev=%d", dev);
    return CUDA_SUCCESS;
}

CUresult cuDevicePrimaryCtxRelease_v2(int dev) { (void)dev; return CUDA_SUCCESS; }

CUresult cuCtxSetCurrent(void *ctx) {
    if (ctx != NULL && ((const char *)ctx < CTX_TOKEN || (const char *)ctx >= CTX_TOKEN + sizeof CTX_TOKEN))
        return CUDA_ERROR_INVALID_CONTEXT;
    ctx_current = ctx != NULL;
    return CUDA_SUCCESS;
}

CUresult cuCtxSynchronize(void) {
    if (!ctx_current) return CUDA_ERROR_INVALID_CONTEXT;
    logf_("cuCtxSynchronize");
    return CUDA_SUCCESS;
}

/* -- memory -------------------------------------------------------------------------------------------------- */
CUresult cuMemAlloc_v2(CUdeviceptr *out, size_t size) {
    if (!ctx_current) return CUDA_ERROR_INVALID_CONTEXT;
    if (size == 0) return CUDA_ERROR_INVALID_VALUE;
    const char *limit = getenv("HCC_STUB_MEM_LIMIT");
    if (limit && *limit && live_bytes + size > (size_t)strtoull(limit, NULL, 10)) return CUDA_ERROR_OUT_OF_MEMORY;
    void *p = NULL;
    if (posix_memalign(&p, 256, size) != 0) return CUDA_ERROR_OUT_OF_MEMORY;
    memset(p, 0xA5, size);  /* "uninitialised" device memory: kernels must not rely on zeros */
    if (n_allocs == cap_allocs) {
        cap_allocs = cap_allocs ? cap_allocs * 2 : 64;
        allocs = realloc(allocs, cap_allocs * sizeof *allocs);
    }
    allocs[n_allocs++] = (Alloc){(uint64_t)(uintptr_t)p, size};
    live_bytes += size;
    total_allocs++;
    *out = (uint64_t)(uintptr_t)p;
    logf_("cuMemAlloc size=%zu -> 0x%llx", size, (unsigned long long)*out);
    return CUDA_SUCCESS;
}

CUresult cuMemFree_v2(CUdeviceptr ptr) {
    for (size_t i = 0; i < n_allocs; i++) {
        if (allocs[i].ptr == ptr) {
            live_bytes -= allocs[i].size;
            free((void *)(uintptr_t)ptr);
            allocs[i] = allocs[--n_allocs];
            logf_("cuMemFree 0x%llx", (unsigned long long)ptr);
            return CUDA_SUCCESS;
        }
    }
    logf_("cuMemFree 0x%llx INVALID", (unsigned long long)ptr);
    return CUDA_ERROR_INVALID_VALUE;
}

CUresult cuMemcpyHtoD_v2(CUdeviceptr dst, const void *src, size_t n) {
    if (!ctx_current) return CUDA_ERROR_INVALID_CONTEXT;
    if (!find_alloc(dst, n)) return CUDA_ERROR_INVALID_VALUE;
    memcpy((void *)(uintptr_t)dst, src, n);
    logf_("cuMemcpyHtoD dst=0x%llx bytes=%zu", (unsigned long long)dst, n);
    return CUDA_SUCCESS;
}

CUresult cuMemcpyDtoH_v2(void *dst, CUdeviceptr src, size_t n) {
    if (!ctx_current) return CUDA_ERROR_INVALID_CONTEXT;
    if (!find_alloc(src, n)) return CUDA_ERROR_INVALID_VALUE;
    memcpy(dst, (const void *)(uintptr_t)src, n);
    logf_("cuMemcpyDtoH src=0x%llx bytes=%zu", (unsigned long long)src, n);
    return CUDA_SUCCESS;
}

CUresult cuMemcpyDtoD_v2(CUdeviceptr dst, CUdeviceptr src, size_t n) {
    if (!ctx_current) return CUDA_ERROR_INVALID_CONTEXT;
    if (!find_alloc(dst, n) || !find_alloc(src, n)) return CUDA_ERROR_INVALID_VALUE;
    memmove((void *)(uintptr_t)dst, (const void *)(uintptr_t)src, n);
    logf_("cuMemcpyDtoD dst=0x%llx src=0x%llx bytes=%zu", (unsigned long long)dst, (unsigned long long)src, n);
    return CUDA_SUCCESS;
}

/* -- modules and functions ----------------------------------------------------------------------------------- */
typedef struct Module { char *image; size_t size; int is_cubin; } Module;
typedef struct Function { Module *module; char name[256]; char sig[512]; } Function;

static uint64_t fnv1a(const unsigned char *p, size_t n) {
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++) { h ^= p[i]; h *= 1099511628211ULL; }
    return h;
}

static size_t elf_size(const unsigned char *p) {  /* 64-bit ELF: the end of its last table or section */
    uint64_t shoff, phoff, end;
    uint16_t phentsize, phnum, shentsize, shnum;
    memcpy(&phoff, p + 0x20, 8); memcpy(&shoff, p + 0x28, 8);
    memcpy(&phentsize, p + 0x36, 2); memcpy(&phnum, p + 0x38, 2);
    memcpy(&shentsize, p + 0x3A, 2); memcpy(&shnum, p + 0x3C, 2);
    end = shoff + (uint64_t)shentsize * shnum;
    if (phoff + (uint64_t)phentsize * phnum > end) end = phoff + (uint64_t)phentsize * phnum;
    for (uint16_t i = 0; i < shnum; i++) {
        const unsigned char *sh = p + shoff + (uint64_t)i * shentsize;
        uint32_t type; uint64_t off, size;
        memcpy(&type, sh + 4, 4); memcpy(&off, sh + 0x18, 8); memcpy(&size, sh + 0x20, 8);
        if (type != 8 /* SHT_NOBITS */ && off + size > end) end = off + size;
    }
    return (size_t)end;
}

static CUresult load(void **module, const void *image) {
    if (!ctx_current) return CUDA_ERROR_INVALID_CONTEXT;
    const unsigned char *p = image;
    Module *m = calloc(1, sizeof *m);
    if (memcmp(p, "\x7f" "ELF", 4) == 0) {
        uint16_t machine;
        memcpy(&machine, p + 18, 2);
        if (p[4] != 2 || machine != 190) { free(m); return CUDA_ERROR_INVALID_IMAGE; }
        m->is_cubin = 1;
        m->size = elf_size(p);
    } else {
        m->size = strlen((const char *)p);
        if (!strstr((const char *)p, ".version") || !strstr((const char *)p, ".target")) { free(m); return CUDA_ERROR_INVALID_IMAGE; }
    }
    m->image = malloc(m->size + 1);
    memcpy(m->image, p, m->size);
    m->image[m->size] = 0;
    logf_("cuModuleLoadData kind=%s bytes=%zu fnv=%016llx", m->is_cubin ? "cubin" : "ptx", m->size,
          (unsigned long long)fnv1a(p, m->size));
    *module = m;
    return CUDA_SUCCESS;
}

CUresult cuModuleLoadData(void **module, const void *image) { return load(module, image); }

CUresult cuModuleLoadDataEx(void **module, const void *image, unsigned n, int *options, void **values) {
    (void)n; (void)options; (void)values;
    return load(module, image);
}

CUresult cuModuleUnload(void *module) {
    Module *m = module;
    if (!m) return CUDA_ERROR_INVALID_HANDLE;
    logf_("cuModuleUnload");
    free(m->image);
    free(m);
    return CUDA_SUCCESS;
}

static int memmem_bytes(const char *hay, size_t n, const char *needle, size_t k) {
    for (size_t i = 0; i + k <= n; i++)
        if (memcmp(hay + i, needle, k) == 0) return 1;
    return 0;
}

/* PTX `.entry NAME(` parameter list -> kinds (p=pointer, l=64-bit, i=32-bit int, f=f32, d=f64, s=16-bit, c=8-bit) */
static int ptx_signature(const char *ptx, const char *name, char *sig, size_t cap) {
    char key[300];
    snprintf(key, sizeof key, ".entry %s(", name);
    const char *at = strstr(ptx, key);
    if (!at) return 0;
    const char *p = at + strlen(key), *end = strchr(p, ')');
    size_t n = 0;
    while (p && end && (p = strstr(p, ".param")) && p < end && n + 1 < cap) {
        const char *t = p + 6;
        while (*t == ' ' || *t == '\t') t++;
        const char *line_end = strpbrk(t, ",)");
        int is_ptr = line_end && memmem_bytes(t, (size_t)(line_end - t), ".ptr", 4);
        char kind = '?';
        if (!strncmp(t, ".u64", 4) || !strncmp(t, ".b64", 4) || !strncmp(t, ".s64", 4)) kind = is_ptr ? 'p' : 'l';
        else if (!strncmp(t, ".f64", 4)) kind = 'd';
        else if (!strncmp(t, ".f32", 4)) kind = 'f';
        else if (!strncmp(t, ".u32", 4) || !strncmp(t, ".b32", 4) || !strncmp(t, ".s32", 4)) kind = 'i';
        else if (!strncmp(t, ".u16", 4) || !strncmp(t, ".b16", 4) || !strncmp(t, ".s16", 4) || !strncmp(t, ".f16", 4)) kind = 's';
        else if (!strncmp(t, ".u8", 3) || !strncmp(t, ".b8", 3) || !strncmp(t, ".s8", 3)) kind = 'c';
        sig[n++] = kind;
        p = t;
    }
    sig[n] = 0;
    return 1;
}

static void *emulator_symbol(const char *symbol) {
    const char *libs = getenv("HCC_STUB_EMULATOR");
    if (!libs || !*libs) return NULL;
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", libs);
    for (char *save = NULL, *path = strtok_r(buf, ":", &save); path; path = strtok_r(NULL, ":", &save)) {
        void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
        if (!h) { logf_("emulator %s: %s", path, dlerror()); continue; }
        void *s = dlsym(h, symbol);
        if (s) return s;
    }
    return NULL;
}

CUresult cuModuleGetFunction(void **fn, void *module, const char *name) {
    Module *m = module;
    if (!m) return CUDA_ERROR_INVALID_HANDLE;
    char key[300];
    int found;
    Function *f = calloc(1, sizeof *f);
    snprintf(f->name, sizeof f->name, "%s", name);
    if (m->is_cubin) {
        snprintf(key, sizeof key, ".text.%s", name);
        found = memmem_bytes(m->image, m->size, key, strlen(key) + 1);  /* section names end with NUL */
        char symbol[320];
        snprintf(symbol, sizeof symbol, "hccemu_%s_sig", name);
        const char *sig = emulator_symbol(symbol);
        snprintf(f->sig, sizeof f->sig, "%s", sig ? sig : "");
    } else {
        found = ptx_signature(m->image, name, f->sig, sizeof f->sig);
    }
    logf_("cuModuleGetFunction %s %s sig=%s", name, found ? "found" : "NOT_FOUND", f->sig);
    if (!found) { free(f); return CUDA_ERROR_NOT_FOUND; }
    f->module = m;
    *fn = f;
    return CUDA_SUCCESS;
}

/* -- launches ------------------------------------------------------------------------------------------------ */
typedef void (*EmuFn)(void **, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned);

CUresult cuLaunchKernel(void *fn, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz,
                        unsigned shared, void *stream, void **params, void **extra) {
    Function *f = fn;
    if (!ctx_current) return CUDA_ERROR_INVALID_CONTEXT;
    if (!f || extra != NULL || stream != NULL) return CUDA_ERROR_INVALID_VALUE;
    if (gx == 0 || gy == 0 || gz == 0 || bx == 0 || by == 0 || bz == 0 || (uint64_t)bx * by * bz > 1024 || bz > 64)
        return CUDA_ERROR_INVALID_VALUE;
    /* parameter values, as the real driver would copy them out of `params` */
    char line[8192];
    size_t len = 0;
    int bad = 0;
    for (size_t i = 0; f->sig[i]; i++) {
        char k = f->sig[i];
        if (!params || !params[i]) return CUDA_ERROR_INVALID_VALUE;
        if (k == 'p') {
            uint64_t v; memcpy(&v, params[i], 8);
            if (!find_alloc(v, 1)) bad = 1;
            len += (size_t)snprintf(line + len, sizeof line - len, " p:0x%llx", (unsigned long long)v);
        } else if (k == 'l') { int64_t v; memcpy(&v, params[i], 8); len += (size_t)snprintf(line + len, sizeof line - len, " l:%lld", (long long)v); }
        else if (k == 'i') { int32_t v; memcpy(&v, params[i], 4); len += (size_t)snprintf(line + len, sizeof line - len, " i:%d", v); }
        else if (k == 'f') { float v; memcpy(&v, params[i], 4); len += (size_t)snprintf(line + len, sizeof line - len, " f:%.9g", v); }
        else if (k == 'd') { double v; memcpy(&v, params[i], 8); len += (size_t)snprintf(line + len, sizeof line - len, " d:%.17g", v); }
        else if (k == 's' || k == 'h') { uint16_t v; memcpy(&v, params[i], 2); len += (size_t)snprintf(line + len, sizeof line - len, " s:%u", v); }
        else if (k == 'c') { int8_t v; memcpy(&v, params[i], 1); len += (size_t)snprintf(line + len, sizeof line - len, " c:%d", v); }
        else len += (size_t)snprintf(line + len, sizeof line - len, " ?");
        if (len >= sizeof line) len = sizeof line - 1;
    }
    line[len] = 0;
    logf_("cuLaunchKernel %s grid=%u,%u,%u block=%u,%u,%u shared=%u params=%s%s", f->name, gx, gy, gz, bx, by, bz, shared,
          f->sig[0] ? line + 1 : "", bad ? " BADPTR" : "");
    if (bad) return CUDA_ERROR_INVALID_VALUE;
    const char *fail = getenv("HCC_STUB_FAIL_KERNEL");
    if (fail && !strcmp(fail, f->name)) return CUDA_ERROR_LAUNCH_FAILED;
    char symbol[320];
    snprintf(symbol, sizeof symbol, "hccemu_%s", f->name);
    EmuFn emu = (EmuFn)emulator_symbol(symbol);
    if (emu) {
        emu(params, gx, gy, gz, bx, by, bz);
    } else if (getenv("HCC_STUB_EMULATOR") && *getenv("HCC_STUB_EMULATOR")) {
        logf_("NOEMU %s", f->name);  /* emulation was asked for: a missing kernel is an error, not a silent no-op */
        return CUDA_ERROR_NOT_FOUND;
    }
    return CUDA_SUCCESS;
}

/* -- events (timing) ----------------------------------------------------------------------------------------- */
CUresult cuEventCreate(void **ev, unsigned flags) { (void)flags; *ev = calloc(1, 8); return CUDA_SUCCESS; }
CUresult cuEventRecord(void *ev, void *stream) { (void)ev; (void)stream; return CUDA_SUCCESS; }
CUresult cuEventSynchronize(void *ev) { (void)ev; return CUDA_SUCCESS; }
CUresult cuEventElapsedTime(float *ms, void *a, void *b) { (void)a; (void)b; *ms = 0.0f; return CUDA_SUCCESS; }
CUresult cuEventDestroy_v2(void *ev) { free(ev); return CUDA_SUCCESS; }

/* -- test helpers -------------------------------------------------------------------------------------------- */
void hccstub_reset(void) { initialized = 0; ctx_current = 0; }
