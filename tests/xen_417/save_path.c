/* SPDX-License-Identifier: LGPL-2.1-only */
/*
 * save_path.c - drive the patched Xen 4.17 save loop without a hypervisor.
 *
 * Built by tests/xen_417.rs against a patched tree produced by build.rs:
 * this file #includes the patched tools/libs/guest/xg_sr_save.c (its
 * functions are static) and is linked with the patched xg_sr_common.c, the
 * remus_ckpt.c the library was built with, and the tree's libxenctrl for
 * the real write_exact()/writev_exact().  Only what needs a hypervisor is
 * replaced by fakes defined here (they take precedence over libxenctrl's):
 * xc_version, xc_domain_getinfo, xc_logdirty_control, xc_shadow_control,
 * xc_get_pfn_type_batch, xenforeignmemory_map/unmap, hypercall buffers and
 * logging.  The guest is a 64-page array; the save ops are minimal.
 *
 * For a Remus, a COLO and a plain stream it runs the real save() loop,
 * with the real write paths to a pipe, and checks:
 *  - the stream's own framing (parsed by a reader thread) against each
 *    record's bytes_sent and pages_sent: per checkpoint, the bytes up to
 *    and including its CHECKPOINT record, and the pages in its PAGE_DATA
 *    records (deferred and XTAB pfns are not pages);
 *  - what bytes_sent does not count: a toolstack-style writer (as libxl
 *    does from its own process, on its own descriptor of the same
 *    stream) appends libxl records after each CHECKPOINT record, in the
 *    callback where libxl writes them (Remus checkpoint(), COLO
 *    checkpoint()): an emulator record and CHECKPOINT_END.  Per
 *    checkpoint, what the stream carried minus bytes_sent is exactly what
 *    that writer wrote, and bytes_sent is exactly the save code's bytes;
 *  - one record per checkpoint the guest resumed from, the first one
 *    live=1; the last one's callback (Remus checkpoint(), COLO
 *    wait_checkpoint()) returns 0, which ends the save: its record is
 *    still emitted, with end=abort (Remus) or end=failover (COLO), and
 *    only that one has an end key;
 *  - dirty_pages / deferred_pages from the log-dirty CLEAN;
 *  - hook placement against the callbacks' own clock readings:
 *    t_suspend <= suspend() <= t_suspended <= t_sent <= postcopy() <=
 *    t_resumed <= checkpoint()/wait_checkpoint() <= t_done;
 *  - the gate paces a Remus stream after its first checkpoint to the
 *    commanded interval, and never paces COLO;
 *  - a plain stream never opens remus_ckpt (ctx->ckpt stays NULL) even
 *    with REMUS_CKPT_STATS set, and emits nothing.
 *
 * Usage: save_path <stats-fifo>     Exit 0: all checks passed.
 */
#include "xg_sr_save.c"

#include <pthread.h>
#include <sys/stat.h>

#define GUEST_PAGES   64
#define PFN_XTAB      3     /* a page without stream data */
#define PFN_DEFERRED  5     /* normalise_page() says EAGAIN once */
#define INTERVAL_MS   40
#define CHECKPOINTS   3     /* the last one's callback ends the save */

/* libxl's own records (tools/libs/light/libxl_sr_stream_format.h). */
#define LIBXL_REC_EMULATOR_CONTEXT  0x00000003U
#define LIBXL_REC_CHECKPOINT_END    0x00000004U
#define EMULATOR_STATE_BYTES        1001  /* odd: the record is padded */

static int failures;

#define CHECK(cond, fmt, ...)                                           \
    do {                                                                \
        if ( !(cond) )                                                  \
        {                                                               \
            failures++;                                                 \
            fprintf(stderr, "FAIL %s:%d: %s: " fmt "\n", __FILE__,      \
                    __LINE__, #cond, ##__VA_ARGS__);                    \
        }                                                               \
    } while ( 0 )

static uint64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

/* ------------------------------------------------------------------ */
/* Fakes for what needs a hypervisor                                   */
/* ------------------------------------------------------------------ */

/* Per-run state the fakes and callbacks share. */
static struct run {
    struct xc_sr_context *ctx;
    xc_stream_type_t stream;
    unsigned int clean_calls;       /* log-dirty CLEAN (final) calls */
    unsigned int dirty_count[CHECKPOINTS];
    unsigned int deferred_done;
    unsigned int checkpoint_calls;
    uint64_t t_suspend_cb[CHECKPOINTS];
    uint64_t t_postcopy_cb[CHECKPOINTS];
    uint64_t t_commit_cb[CHECKPOINTS];
    unsigned int suspend_calls, postcopy_calls;
    bool ckpt_was_null;
    int toolstack_fd;               /* another descriptor of the stream */
    unsigned int toolstack_calls;
    uint64_t toolstack_written[CHECKPOINTS];
} run;

int xc_version(xc_interface *xch, int cmd, void *arg)
{
    return (4 << 16) | 17;
}

int xc_domain_getinfo(xc_interface *xch, uint32_t first_domid,
                      unsigned int max_doms, xc_dominfo_t *info)
{
    memset(info, 0, sizeof(*info));
    info->domid = first_domid;
    info->hvm = 1;
    info->shutdown = 1;
    info->shutdown_reason = SHUTDOWN_suspend;
    return 1;
}

int xc_shadow_control(xc_interface *xch, uint32_t domid, unsigned int sop,
                      unsigned int *mb, unsigned int mode)
{
    return 0;
}

/*
 * Checkpoint k dirties pfns 0..(4 + 3k), PFN_XTAB included; the
 * deferred pfn comes on top from the live round.
 */
long long xc_logdirty_control(xc_interface *xch, uint32_t domid,
                              unsigned int sop,
                              xc_hypercall_buffer_t *dirty_bitmap,
                              unsigned long pages, unsigned int mode,
                              xc_shadow_op_stats_t *stats)
{
    unsigned long *bitmap = dirty_bitmap->hbuf;
    unsigned int k = run.clean_calls++, n = 5 + 3 * k, i;

    bitmap_clear(bitmap, pages);
    for ( i = 0; i < n; i++ )
        set_bit(i, bitmap);
    if ( k < CHECKPOINTS )
        run.dirty_count[k] = n;
    stats->dirty_count = n;
    return pages;
}

int xc_get_pfn_type_batch(xc_interface *xch, uint32_t dom, unsigned int num,
                          xen_pfn_t *arr)
{
    unsigned int i;

    for ( i = 0; i < num; i++ )
        arr[i] = arr[i] == PFN_XTAB ? XEN_DOMCTL_PFINFO_XTAB
                                    : XEN_DOMCTL_PFINFO_NOTAB;
    return 0;
}

/* Each mapped page starts with its pfn. */
void *xenforeignmemory_map(xenforeignmemory_handle *fmem, uint32_t dom,
                           int prot, size_t pages, const xen_pfn_t arr[],
                           int err[])
{
    char *p = calloc(pages ? pages : 1, PAGE_SIZE);
    size_t i;

    for ( i = 0; p && i < pages; i++ )
    {
        memcpy(p + i * PAGE_SIZE, &arr[i], sizeof(arr[i]));
        err[i] = 0;
    }
    return p;
}

int xenforeignmemory_unmap(xenforeignmemory_handle *fmem, void *addr,
                           size_t pages)
{
    free(addr);
    return 0;
}

void *xc__hypercall_buffer_alloc_pages(xc_interface *xch,
                                       xc_hypercall_buffer_t *b, int nr_pages)
{
    b->hbuf = calloc(nr_pages, PAGE_SIZE);
    return b->hbuf;
}

void xc__hypercall_buffer_free_pages(xc_interface *xch,
                                     xc_hypercall_buffer_t *b, int nr_pages)
{
    free(b->hbuf);
    b->hbuf = NULL;
}

void xc_report_error(xc_interface *xch, int code, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    fprintf(stderr, "libxenguest error: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
}

void xc_report(xc_interface *xch, xentoollog_logger *lg,
               xentoollog_level level, int code, const char *fmt, ...)
{
}

const char *xc_set_progress_prefix(xc_interface *xch, const char *doing)
{
    return NULL;
}

void xc_report_progress_single(xc_interface *xch, const char *doing)
{
}

void xc_report_progress_step(xc_interface *xch, unsigned long done,
                             unsigned long total)
{
}

/* Referenced by xc_domain_save(), which this program does not call. */
struct xc_sr_save_ops save_ops_x86_pv, save_ops_x86_hvm;

/* ------------------------------------------------------------------ */
/* Save ops of the fake guest                                          */
/* ------------------------------------------------------------------ */

static xen_pfn_t op_pfn_to_gfn(const struct xc_sr_context *ctx, xen_pfn_t pfn)
{
    return pfn;
}

static int op_normalise_page(struct xc_sr_context *ctx, xen_pfn_t type,
                             void **page)
{
    xen_pfn_t pfn;

    memcpy(&pfn, *page, sizeof(pfn));
    if ( pfn == PFN_DEFERRED && !run.deferred_done )
    {
        run.deferred_done = 1;
        errno = EAGAIN;
        return -1;
    }
    return 0;
}

static int op_nothing(struct xc_sr_context *ctx)
{
    return 0;
}

static int op_setup(struct xc_sr_context *ctx)
{
    ctx->save.p2m_size = GUEST_PAGES;
    return 0;
}

/* A record with a split, unaligned body: exercises the padding. */
static int op_record(struct xc_sr_context *ctx)
{
    static char data[5] = "head", buf[11] = "0123456789";
    struct xc_sr_record rec = {
        .type = REC_TYPE_OPTIONAL | 0x7ff, .length = sizeof(data),
        .data = data,
    };

    return write_split_record(ctx, &rec, buf, sizeof(buf));
}

static const struct xc_sr_save_ops fake_ops = {
    .pfn_to_gfn          = op_pfn_to_gfn,
    .normalise_page      = op_normalise_page,
    .setup               = op_setup,
    .static_data         = op_record,
    .start_of_stream     = op_nothing,
    .start_of_checkpoint = op_nothing,
    .end_of_checkpoint   = op_record,
    .check_vm_state      = op_nothing,
    .cleanup             = op_nothing,
};

/* ------------------------------------------------------------------ */
/* Callbacks, as libxl-save-helper would call them                     */
/* ------------------------------------------------------------------ */

static int cb_suspend(void *data)
{
    if ( run.suspend_calls < CHECKPOINTS )
        run.t_suspend_cb[run.suspend_calls] = now_ns();
    run.suspend_calls++;
    if ( !run.ctx->ckpt )
        run.ckpt_was_null = true;
    return 1;
}

static int cb_postcopy(void *data)
{
    if ( run.postcopy_calls < CHECKPOINTS )
        run.t_postcopy_cb[run.postcopy_calls] = now_ns();
    run.postcopy_calls++;
    return 1;
}

static void write_or_die(int fd, const void *buf, size_t len)
{
    if ( write(fd, buf, len) != (ssize_t)len )
    {
        perror("toolstack write");
        exit(2);
    }
}

/*
 * What libxl writes into the stream in the checkpoint callback
 * (libxl__stream_write_start_checkpoint()): the device model's state as
 * an EMULATOR_CONTEXT record, then CHECKPOINT_END (8 bytes, even for PV).
 * Written on run.toolstack_fd, not on ctx->fd, as libxl's own descriptor.
 */
static void toolstack_write(void)
{
    static const uint8_t zero[8];
    static char state[EMULATOR_STATE_BYTES];
    uint32_t emu_hdr[2] = { 1 /* qemu-xen */, 0 };
    uint32_t rec[2] = { LIBXL_REC_EMULATOR_CONTEXT,
                        sizeof(emu_hdr) + sizeof(state) };
    uint32_t end[2] = { LIBXL_REC_CHECKPOINT_END, 0 };
    size_t pad = ROUNDUP(rec[1], REC_ALIGN_ORDER) - rec[1];
    unsigned int k = run.toolstack_calls++;

    memset(state, 'q', sizeof(state));
    write_or_die(run.toolstack_fd, rec, sizeof(rec));
    write_or_die(run.toolstack_fd, emu_hdr, sizeof(emu_hdr));
    write_or_die(run.toolstack_fd, state, sizeof(state));
    write_or_die(run.toolstack_fd, zero, pad);
    write_or_die(run.toolstack_fd, end, sizeof(end));
    if ( k < CHECKPOINTS )
        run.toolstack_written[k] = sizeof(rec) + rec[1] + pad + sizeof(end);
}

/* Remus checkpoint(), COLO wait_checkpoint(): the last one stops. */
static int cb_commit(void *data)
{
    unsigned int k = run.checkpoint_calls++;

    if ( k < CHECKPOINTS )
        run.t_commit_cb[k] = now_ns();
    /* Remus: libxl writes its records here, before it commits. */
    if ( run.stream == XC_STREAM_REMUS )
        toolstack_write();
    return k + 1 < CHECKPOINTS;
}

/* COLO's checkpoint() (before postcopy): libxl writes its records here. */
static int cb_colo_checkpoint(void *data)
{
    toolstack_write();
    return 1;
}

static int cb_precopy_stop(struct precopy_stats stats, void *data)
{
    return XGS_POLICY_STOP_AND_COPY;
}

/* ------------------------------------------------------------------ */
/* Stream reader: the stream's own view of bytes and pages             */
/* ------------------------------------------------------------------ */

struct stream_view {
    int fd;
    uint64_t bytes;                         /* all bytes read */
    uint64_t ckpt_end_bytes[CHECKPOINTS + 1];
    /* libxl's records after each CHECKPOINT, up to its CHECKPOINT_END */
    uint64_t toolstack_bytes[CHECKPOINTS + 1];
    uint64_t ckpt_end_pages[CHECKPOINTS + 1];
    unsigned int checkpoints;
    uint64_t pages;
    bool end_record, bad;
};

static int read_all(struct stream_view *v, void *buf, size_t len)
{
    char *p = buf;

    while ( len )
    {
        ssize_t n = read(v->fd, p, len);

        if ( n <= 0 )
            return -1;
        p += n;
        len -= n;
        v->bytes += n;
    }
    return 0;
}

/*
 * libxl's records that follow a CHECKPOINT record, up to and including
 * CHECKPOINT_END, as libxl's restore side reads them; their bytes.
 */
static uint64_t read_toolstack_block(struct stream_view *v)
{
    uint64_t start = v->bytes;
    uint32_t hdr[2];
    char *body;

    while ( !read_all(v, hdr, sizeof(hdr)) )
    {
        size_t len = ROUNDUP(hdr[1], REC_ALIGN_ORDER);

        if ( hdr[0] == LIBXL_REC_CHECKPOINT_END )
            return v->bytes - start;
        body = malloc(len ? len : 1);
        if ( hdr[0] != LIBXL_REC_EMULATOR_CONTEXT || !body ||
             read_all(v, body, len) )
        {
            free(body);
            break;
        }
        free(body);
    }
    v->bad = true;
    return v->bytes - start;
}

static void *reader(void *arg)
{
    struct stream_view *v = arg;
    struct xc_sr_ihdr ihdr;
    struct xc_sr_dhdr dhdr;
    struct xc_sr_rhdr rhdr;
    char *body;

    if ( read_all(v, &ihdr, sizeof(ihdr)) || read_all(v, &dhdr, sizeof(dhdr)) ||
         ihdr.marker != IHDR_MARKER )
    {
        v->bad = true;
        return NULL;
    }

    while ( !read_all(v, &rhdr, sizeof(rhdr)) )
    {
        size_t len = ROUNDUP(rhdr.length, REC_ALIGN_ORDER);

        body = malloc(len ? len : 1);
        if ( !body || read_all(v, body, len) )
        {
            v->bad = true;
            free(body);
            return NULL;
        }
        if ( rhdr.type == REC_TYPE_PAGE_DATA )
        {
            struct xc_sr_rec_page_data_header hdr;
            const uint64_t *pfns = (const uint64_t *)(body + sizeof(hdr));
            unsigned int i, pages = 0;

            memcpy(&hdr, body, sizeof(hdr));
            for ( i = 0; i < hdr.count; i++ )
                if ( (pfns[i] >> 32) != XEN_DOMCTL_PFINFO_XTAB )
                    pages++;
            if ( rhdr.length != sizeof(hdr) + hdr.count * 8 +
                 (uint64_t)pages * PAGE_SIZE )
                v->bad = true;
            v->pages += pages;
        }
        else if ( rhdr.type == REC_TYPE_CHECKPOINT &&
                  v->checkpoints < CHECKPOINTS + 1 )
        {
            v->ckpt_end_bytes[v->checkpoints] = v->bytes;
            v->ckpt_end_pages[v->checkpoints] = v->pages;
            v->toolstack_bytes[v->checkpoints] = read_toolstack_block(v);
            v->checkpoints++;
        }
        else if ( rhdr.type == REC_TYPE_END )
            v->end_record = true;
        free(body);
    }
    return NULL;
}

/* ------------------------------------------------------------------ */
/* Records from the stats FIFO                                         */
/* ------------------------------------------------------------------ */

#define MAX_RECORDS 8

struct rec_line {
    char text[REMUS_CKPT_RECORD_MAX + 1];
};

static uint64_t field(const char *line, const char *key)
{
    char pat[64];
    const char *p;

    snprintf(pat, sizeof(pat), " %s=", key);
    p = strstr(line, pat);
    if ( !p )
    {
        failures++;
        fprintf(stderr, "FAIL: no %s in record: %s\n", key, line);
        return 0;
    }
    return strtoull(p + strlen(pat), NULL, 10);
}

static unsigned int read_records(int fd, struct rec_line *out)
{
    static char buf[MAX_RECORDS * (REMUS_CKPT_RECORD_MAX + 1)];
    size_t len = 0;
    ssize_t n;
    unsigned int count = 0;
    char *line, *save = NULL;

    while ( len < sizeof(buf) - 1 &&
            (n = read(fd, buf + len, sizeof(buf) - 1 - len)) > 0 )
        len += n;
    buf[len] = '\0';

    for ( line = strtok_r(buf, "\n", &save); line && count < MAX_RECORDS;
          line = strtok_r(NULL, "\n", &save) )
        snprintf(out[count++].text, sizeof(out[0].text), "%s", line);
    return count;
}

/* ------------------------------------------------------------------ */
/* One save                                                            */
/* ------------------------------------------------------------------ */

static void one_save(xc_stream_type_t stream, int stats_fd)
{
    const char *name = stream == XC_STREAM_REMUS ? "remus" :
                       stream == XC_STREAM_COLO ? "colo" : "plain";
    struct xc_interface_core xch_core = { 0 };
    struct save_callbacks cb = {
        .suspend = cb_suspend,
        .postcopy = cb_postcopy,
        .precopy_policy = cb_precopy_stop,
    };
    struct xc_sr_context ctx = {
        .xch = &xch_core,
        .domid = 7,
        .stream_type = stream,
    };
    struct stream_view view = { 0 };
    struct rec_line recs[MAX_RECORDS];
    int stream_pipe[2], ctl_pipe[2], colo_pipe[2] = { -1, -1 };
    char ctl_spec[32], ctl_line[32];
    pthread_t thread;
    unsigned int nrec, k, committed;
    int rc, n;

    memset(&run, 0, sizeof(run));
    run.ctx = &ctx;
    run.stream = stream;

    if ( stream == XC_STREAM_REMUS )
        cb.checkpoint = cb_commit;
    else if ( stream == XC_STREAM_COLO )
    {
        cb.checkpoint = cb_colo_checkpoint;
        cb.wait_checkpoint = cb_commit;
    }

    /* The commanded interval is there for every stream: only Remus uses it. */
    if ( pipe(ctl_pipe) || pipe(stream_pipe) )
    {
        perror("pipe");
        exit(2);
    }
    snprintf(ctl_spec, sizeof(ctl_spec), "fd:%d", ctl_pipe[0]);
    setenv(REMUS_CKPT_ENV_CONTROL, ctl_spec, 1);
    n = snprintf(ctl_line, sizeof(ctl_line), "interval_ms=%u\n", INTERVAL_MS);
    if ( write(ctl_pipe[1], ctl_line, n) != n )
        exit(2);

    /*
     * COLO: the secondary sends a dirty pfn list for every checkpoint
     * after the live one, read from recv_fd; two pfns each.
     */
    if ( stream == XC_STREAM_COLO )
    {
        uint64_t pfns[2] = { 40, 41 };
        struct xc_sr_rhdr rhdr = { REC_TYPE_CHECKPOINT_DIRTY_PFN_LIST,
                                   sizeof(pfns) };

        if ( pipe(colo_pipe) )
            exit(2);
        for ( k = 1; k < CHECKPOINTS; k++ )
            if ( write(colo_pipe[1], &rhdr, sizeof(rhdr)) != sizeof(rhdr) ||
                 write(colo_pipe[1], pfns, sizeof(pfns)) != sizeof(pfns) )
                exit(2);
    }

    ctx.fd = stream_pipe[1];
    run.toolstack_fd = dup(stream_pipe[1]);
    if ( run.toolstack_fd < 0 )
        exit(2);
    ctx.save.callbacks = &cb;
    ctx.save.ops = fake_ops;
    ctx.save.live = stream != XC_STREAM_PLAIN;
    ctx.save.recv_fd = colo_pipe[0];
    ctx.dominfo.hvm = 1;

    view.fd = stream_pipe[0];
    pthread_create(&thread, NULL, reader, &view);

    rc = save(&ctx, DHDR_TYPE_X86_HVM);

    close(run.toolstack_fd);
    close(stream_pipe[1]);
    pthread_join(thread, NULL);
    close(stream_pipe[0]);
    close(ctl_pipe[0]);
    close(ctl_pipe[1]);
    if ( colo_pipe[0] >= 0 )
    {
        close(colo_pipe[0]);
        close(colo_pipe[1]);
    }

    nrec = read_records(stats_fd, recs);
    CHECK(!view.bad, "%s: malformed stream", name);
    CHECK(ctx.ckpt == NULL, "%s: ckpt not closed", name);

    if ( stream == XC_STREAM_PLAIN )
    {
        CHECK(rc == 0, "plain save failed");
        CHECK(run.ckpt_was_null, "plain stream opened remus_ckpt");
        CHECK(view.end_record, "plain stream has no END record");
        CHECK(nrec == 0, "plain stream emitted %u records", nrec);
        printf("plain: %"PRIu64" bytes, %"PRIu64" pages, ckpt NULL, "
               "0 records\n", view.bytes, view.pages);
        return;
    }

    committed = CHECKPOINTS;
    CHECK(!run.ckpt_was_null, "%s: remus_ckpt not opened", name);
    CHECK(view.checkpoints == CHECKPOINTS,
          "%s: %u CHECKPOINT records in the stream", name, view.checkpoints);
    CHECK(nrec == committed, "%s: %u records for %u checkpoints resumed from",
          name, nrec, committed);

    for ( k = 0; k < nrec && k < committed; k++ )
    {
        const char *r = recs[k].text;
        /* The previous checkpoint ends with libxl's records. */
        uint64_t start = k ? view.ckpt_end_bytes[k - 1] +
                             view.toolstack_bytes[k - 1] : 0;
        /* What the stream carried for this checkpoint, libxl's included. */
        uint64_t carried = view.ckpt_end_bytes[k] + view.toolstack_bytes[k] -
                           start;
        /* The save code's part: up to and including its CHECKPOINT. */
        uint64_t bytes = view.ckpt_end_bytes[k] - start;
        uint64_t pages = view.ckpt_end_pages[k] -
                         (k ? view.ckpt_end_pages[k - 1] : 0);
        uint64_t t_suspend = field(r, "t_suspend");
        uint64_t t_suspended = field(r, "t_suspended");
        uint64_t t_sent = field(r, "t_sent");
        uint64_t t_resumed = field(r, "t_resumed");
        uint64_t t_done = field(r, "t_done");

        CHECK(!strncmp(r, "ckpt v=1 ", 9), "%s: record %u: %s", name, k, r);
        CHECK(strstr(r, stream == XC_STREAM_COLO ? " stream=colo "
                                                 : " stream=remus "),
              "%s: record %u stream: %s", name, k, r);
        CHECK(field(r, "seq") == k, "%s: record %u seq", name, k);
        if ( k + 1 < committed )
            CHECK(!strstr(r, " end="), "%s: record %u: %s", name, k, r);
        else
        {
            const char *end = stream == XC_STREAM_COLO ? " end=failover"
                                                       : " end=abort";
            size_t len = strlen(r), elen = strlen(end);

            CHECK(len > elen && !strcmp(r + len - elen, end),
                  "%s: last record %u has no%s last: %s", name, k, end, r);
        }
        CHECK(field(r, "domid") == 7, "%s: record %u domid", name, k);
        CHECK(field(r, "live") == (k == 0), "%s: record %u live", name, k);
        CHECK(field(r, "page_size") == PAGE_SIZE, "%s: page_size", name);
        CHECK(field(r, "bytes_sent") == bytes,
              "%s: record %u bytes_sent %"PRIu64", stream %"PRIu64,
              name, k, field(r, "bytes_sent"), bytes);
        /*
         * Not counted: exactly what the toolstack wrote on its own
         * descriptor; and it did write (the stream read it back).
         */
        CHECK(view.toolstack_bytes[k] == run.toolstack_written[k] &&
              run.toolstack_written[k] > 0,
              "%s: record %u: toolstack wrote %"PRIu64", stream has %"PRIu64,
              name, k, run.toolstack_written[k], view.toolstack_bytes[k]);
        CHECK(carried - field(r, "bytes_sent") == run.toolstack_written[k],
              "%s: record %u: fd carried %"PRIu64", bytes_sent %"PRIu64
              ", toolstack %"PRIu64, name, k, carried,
              field(r, "bytes_sent"), run.toolstack_written[k]);
        CHECK(field(r, "pages_sent") == pages,
              "%s: record %u pages_sent %"PRIu64", stream %"PRIu64,
              name, k, field(r, "pages_sent"), pages);
        CHECK(field(r, "dirty_pages") == run.dirty_count[k],
              "%s: record %u dirty_pages %"PRIu64", CLEAN said %u",
              name, k, field(r, "dirty_pages"), run.dirty_count[k]);
        /* The pfn deferred in the live round is pending at its CLEAN. */
        CHECK(field(r, "deferred_pages") == (k == 0),
              "%s: record %u deferred_pages", name, k);

        CHECK(t_suspend && t_suspend <= run.t_suspend_cb[k] &&
              run.t_suspend_cb[k] <= t_suspended,
              "%s: record %u: gate/suspend order", name, k);
        CHECK(t_suspended <= t_sent && t_sent <= run.t_postcopy_cb[k] &&
              run.t_postcopy_cb[k] <= t_resumed,
              "%s: record %u: sent/postcopy/resumed order", name, k);
        CHECK(t_resumed <= run.t_commit_cb[k] && run.t_commit_cb[k] <= t_done,
              "%s: record %u: commit/done order", name, k);

        if ( k == 0 || stream == XC_STREAM_COLO )
            CHECK(field(r, "gate_wait_ns") == 0,
                  "%s: record %u paced", name, k);
        else
        {
            uint64_t prev = field(recs[k - 1].text, "t_suspend");

            CHECK(field(r, "interval_ms") == INTERVAL_MS,
                  "%s: record %u interval_ms", name, k);
            CHECK(t_suspend - prev >= INTERVAL_MS * 1000000ull,
                  "%s: record %u: %"PRIu64" ns since previous suspend",
                  name, k, t_suspend - prev);
        }
        printf("%s: record %u: bytes_sent=%"PRIu64" (stream %"PRIu64", "
               "fd carried %"PRIu64" with the toolstack's %"PRIu64") "
               "pages_sent=%"PRIu64" (stream %"PRIu64") dirty_pages=%"PRIu64
               " live=%"PRIu64" gate_wait_ns=%"PRIu64"%s\n",
               name, k, field(r, "bytes_sent"), bytes, carried,
               view.toolstack_bytes[k],
               field(r, "pages_sent"), pages, field(r, "dirty_pages"),
               field(r, "live"), field(r, "gate_wait_ns"),
               strstr(r, " end=") ? strstr(r, " end=") : "");
    }
}

int main(int argc, char **argv)
{
    int stats_fd;

    if ( argc != 2 )
    {
        fprintf(stderr, "usage: %s STATS-FIFO\n", argv[0]);
        return 2;
    }
    if ( mkfifo(argv[1], 0600) && errno != EEXIST )
    {
        perror("mkfifo");
        return 2;
    }
    /* Our reader end first, so that the library's O_NONBLOCK open works. */
    stats_fd = open(argv[1], O_RDONLY | O_NONBLOCK);
    if ( stats_fd < 0 )
    {
        perror("open stats fifo");
        return 2;
    }
    setenv(REMUS_CKPT_ENV_STATS, argv[1], 1);

    one_save(XC_STREAM_REMUS, stats_fd);
    one_save(XC_STREAM_COLO, stats_fd);
    one_save(XC_STREAM_PLAIN, stats_fd);

    if ( failures )
    {
        fprintf(stderr, "%d check(s) failed\n", failures);
        return 1;
    }
    printf("all checks passed\n");
    return 0;
}
