/* SPDX-License-Identifier: LGPL-2.1-only */
/*
 * remus_ckpt.c - per-checkpoint records and interval pacing for Remus/COLO.
 *
 * Compiled into libxenguest and run inside libxl-save-helper, so the rules
 * are those of the save loop: never block except when pacing on purpose,
 * never fail the save, never kill the host process (it does not ignore
 * SIGPIPE).  Every problem is counted and reported in the next record.
 *
 * The contract is remus_ckpt.h; the wire format is docs/protocol.md.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "remus_ckpt.h"

/*
 * Longest control line kept, newline excluded.  "interval_ms=60000" is 17
 * bytes; the rest leaves room for trailing blanks.  Longer lines are
 * rejected as a whole rather than truncated into something valid.
 */
#define CTL_LINE_MAX 64

#define NSEC_PER_MSEC 1000000ULL
#define NSEC_PER_SEC  1000000000ULL

/*
 * How often an open stats path is checked with stat() for having been
 * replaced while the write()s still succeed (see stats_ensure()).
 */
#define STATS_RECHECK_NS (100 * NSEC_PER_MSEC)

enum chan_state {
    CHAN_UNSET,   /* spec NULL or "": not configured */
    CHAN_PATH,    /* a path: opened, closed and reopened here */
    CHAN_FD,      /* "fd:N": belongs to the caller, never closed here */
    CHAN_OFF,     /* configured but unusable (bad spec, refused, dead) */
};

/* One end of a pipe to the consumer: the stats writer or control reader. */
struct chan {
    enum chan_state state;
    char *path;   /* CHAN_PATH only */
    int fd;       /* -1: not open */
    dev_t dev;    /* identity of what fd refers to, for CHAN_PATH */
    ino_t ino;
};

struct remus_ckpt {
    uint32_t domid;
    uint32_t page_size;
    unsigned int stream;

    struct chan stats;
    uint64_t stats_checked; /* when the stats path's identity was checked */
    struct chan ctl;

    /* Control line being assembled across reads. */
    char line[CTL_LINE_MAX];
    size_t line_len;
    int line_long;          /* line overflowed: reject it at its newline */

    unsigned int cmd_interval_ms;   /* latest valid command; 0: none */
    uint64_t ctl_rejected;
    uint64_t dropped;

    uint64_t seq;
    /* t_suspend of the previous checkpoint: survives emit's reset. */
    uint64_t prev_suspend;

    struct remus_ckpt_record cur;
    struct remus_ckpt_record last;   /* valid once seq > 0 */

    /* Dirty-page budget (section "Dirty-page budget"). */
    uint64_t cmd_budget_pages;      /* latest valid command; 0: off */
    remus_ckpt_probe_fn *probe;     /* NULL: the budget is never probed */
    void *probe_arg;
    uint64_t probe_cost_ns;         /* mean cost of one probe (EWMA 1/8) */
    uint64_t probe_errors;
    remus_ckpt_now_fn *clock_now;   /* NULL: CLOCK_MONOTONIC */
    remus_ckpt_sleep_fn *clock_sleep;
    void *clock_arg;
};

/* ------------------------------------------------------------------ */
/* Small helpers                                                       */
/* ------------------------------------------------------------------ */

static uint64_t now_ns(void)
{
    struct timespec ts;

    /* CLOCK_MONOTONIC cannot fail with a valid pointer; 0 means "unset". */
    if ( clock_gettime(CLOCK_MONOTONIC, &ts) )
        return 0;

    return (uint64_t)ts.tv_sec * NSEC_PER_SEC + (uint64_t)ts.tv_nsec;
}

static struct timespec ns_to_timespec(uint64_t ns)
{
    struct timespec ts;

    ts.tv_sec = (time_t)(ns / NSEC_PER_SEC);
    ts.tv_nsec = (long)(ns % NSEC_PER_SEC);

    return ts;
}

/*
 * Parse "fd:N".  Returns 0 if spec is not an fd spec (a path), 1 with *fd
 * set if it is a valid one, -1 if it starts with "fd:" but N is not a
 * plain decimal fd (no sign, blanks, leading zeros or overflow).  A file
 * literally named "fd:3" can still be given as "./fd:3".
 */
static int parse_fd_spec(const char *spec, int *fd)
{
    const char *p = spec + 3;
    long v = 0;

    if ( strncmp(spec, "fd:", 3) )
        return 0;

    if ( *p == '\0' || (p[0] == '0' && p[1] != '\0') )
        return -1;

    for ( ; *p; p++ )
    {
        if ( *p < '0' || *p > '9' )
            return -1;
        v = v * 10 + (*p - '0');
        if ( v > INT_MAX )
            return -1;
    }

    *fd = (int)v;
    return 1;
}

/*
 * Set up a channel from its spec.  Returns NULL, or a reason why the spec
 * cannot be used (the channel is then CHAN_OFF).
 */
static const char *chan_init(struct chan *ch, const char *spec)
{
    int fd;
    int r;

    ch->state = CHAN_UNSET;
    ch->path = NULL;
    ch->fd = -1;

    if ( !spec || !*spec )
        return NULL;

    r = parse_fd_spec(spec, &fd);
    if ( r < 0 )
    {
        ch->state = CHAN_OFF;
        return "invalid fd:N spec";
    }
    if ( r > 0 )
    {
        ch->state = CHAN_FD;
        ch->fd = fd;
        return NULL;
    }

    ch->path = strdup(spec);
    if ( !ch->path )
    {
        ch->state = CHAN_OFF;
        return "out of memory";
    }
    ch->state = CHAN_PATH;

    return NULL;
}

/*
 * An fd:N is the caller's, handed over for this purpose.  Check it at open
 * (so that a number that is not open is never used, even if the process
 * opens something else under it later): it must not be open only in
 * `wrong_mode` (O_RDONLY for stats, O_WRONLY for control), and it is made
 * non-blocking, or a full or empty pipe would stall the save.  Returns
 * NULL or why it cannot be used.
 */
static const char *fd_check(int fd, int wrong_mode)
{
    int fl = fcntl(fd, F_GETFL);

    if ( fl < 0 )
        return strerror(errno);
    if ( (fl & O_ACCMODE) == wrong_mode )
        return wrong_mode == O_RDONLY ? "not open for writing"
                                      : "not open for reading";
    if ( fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0 )
        return strerror(errno);

    return NULL;
}

/* Close a channel's fd if this library opened it; fd:N is the caller's. */
static void chan_close(struct chan *ch)
{
    if ( ch->state != CHAN_PATH )
        return;
    if ( ch->fd >= 0 )
        close(ch->fd);
    ch->fd = -1;
}

/* Remember which file fd is, to notice when the path is replaced. */
static void chan_note_identity(struct chan *ch, const struct stat *st)
{
    ch->dev = st->st_dev;
    ch->ino = st->st_ino;
}

/*
 * Has the path been removed or replaced (e.g. a FIFO deleted and created
 * again) since ch->fd was opened?  One stat() per call.
 */
static int chan_path_changed(const struct chan *ch)
{
    struct stat st;

    if ( stat(ch->path, &st) )
        return 1;

    return st.st_dev != ch->dev || st.st_ino != ch->ino;
}

/* ------------------------------------------------------------------ */
/* Record formatting                                                   */
/* ------------------------------------------------------------------ */

/* A line under construction; len may exceed sizeof(buf) once it overflows. */
struct line {
    char buf[REMUS_CKPT_RECORD_MAX + 1];
    size_t len;
};

/*
 * Append n bytes; past the limit only count, the result is -1 anyway.  len
 * only grows, so nothing is appended after the first piece that did not fit.
 */
static void line_append(struct line *l, const char *s, size_t n)
{
    if ( l->len + n <= sizeof(l->buf) )
        memcpy(l->buf + l->len, s, n);
    l->len += n;
}

/*
 * Append " key=" and v in decimal, without snprintf: this runs ~20 times
 * per record on the save path.  Same spelling as "%" PRIu64.  key is the
 * whole " key=" prefix, of length klen (see LINE_U64).
 */
static void line_u64(struct line *l, const char *key, size_t klen,
                     uint64_t v)
{
    char num[20];           /* UINT64_MAX has 20 digits */
    char *p = num + sizeof(num);

    do {
        *--p = (char)('0' + v % 10);
        v /= 10;
    } while ( v );

    line_append(l, key, klen);
    line_append(l, p, (size_t)(num + sizeof(num) - p));
}

/* " key=" as a literal: its length is known at compile time. */
#define LINE_U64(l, key, v) \
    line_u64(l, " " key "=", sizeof(" " key "=") - 1, v)

static const char *stream_name(uint32_t stream)
{
    switch ( stream )
    {
    case REMUS_CKPT_STREAM_REMUS:
        return "remus";
    case REMUS_CKPT_STREAM_COLO:
        return "colo";
    default:
        return NULL;
    }
}

static const char *trigger_name(uint32_t trigger)
{
    switch ( trigger )
    {
    case REMUS_CKPT_TRIGGER_INTERVAL:
        return "interval";
    case REMUS_CKPT_TRIGGER_BUDGET:
        return "budget";
    case REMUS_CKPT_TRIGGER_CONTROL:
        return "control";
    default:
        return "none";
    }
}

/*
 * The budget keys, only once a budget was commanded or probed: without
 * one, records are exactly what they were before budgets existed.
 */
static void budget_format(struct line *l, const struct remus_ckpt_record *rec)
{
    const char *trigger = trigger_name(rec->trigger);

    if ( !rec->budget_pages && !rec->probes && !rec->probe_errors )
        return;

    line_append(l, " trigger=", sizeof(" trigger=") - 1);
    line_append(l, trigger, strlen(trigger));
    LINE_U64(l, "dirty_at_trigger", rec->dirty_at_trigger);
    LINE_U64(l, "probes", rec->probes);
    LINE_U64(l, "probe_ns", rec->probe_ns);
    LINE_U64(l, "budget_pages", rec->budget_pages);
    LINE_U64(l, "probe_errors", rec->probe_errors);
}

int remus_ckpt_format(const struct remus_ckpt_record *rec, char *buf,
                      size_t len)
{
    struct line l;
    const char *stream;

    if ( !rec || !buf || !len )
        return -1;

    stream = stream_name(rec->stream);
    if ( !stream )
        return -1;

    l.len = 0;
    line_append(&l, "ckpt", 4);
    LINE_U64(&l, "v", REMUS_CKPT_RECORD_VERSION);

    /* Key order is part of the protocol (docs/protocol.md). */
    LINE_U64(&l, "seq", rec->seq);
    LINE_U64(&l, "domid", rec->domid);
    line_append(&l, " stream=", sizeof(" stream=") - 1);
    line_append(&l, stream, strlen(stream));
    LINE_U64(&l, "live", rec->live ? 1 : 0);
    LINE_U64(&l, "page_size", rec->page_size);
    LINE_U64(&l, "dirty_pages", rec->dirty_pages);
    LINE_U64(&l, "deferred_pages", rec->deferred_pages);
    LINE_U64(&l, "pages_sent", rec->pages_sent);
    LINE_U64(&l, "bytes_sent", rec->bytes_sent);
    /* Only compressed (legacy) streams know a raw size: omit it otherwise. */
    if ( rec->bytes_raw )
        LINE_U64(&l, "bytes_raw", rec->bytes_raw);
    LINE_U64(&l, "t_gate", rec->t_gate);
    LINE_U64(&l, "t_suspend", rec->t_suspend);
    LINE_U64(&l, "t_suspended", rec->t_suspended);
    LINE_U64(&l, "t_sent", rec->t_sent);
    LINE_U64(&l, "t_resumed", rec->t_resumed);
    LINE_U64(&l, "t_done", rec->t_done);
    LINE_U64(&l, "interval_ms", rec->interval_ms);
    LINE_U64(&l, "cmd_interval_ms", rec->cmd_interval_ms);
    LINE_U64(&l, "gate_wait_ns", rec->gate_wait_ns);
    LINE_U64(&l, "dropped", rec->dropped);
    LINE_U64(&l, "ctl_rejected", rec->ctl_rejected);
    budget_format(&l, rec);

    /* The newline, then the NUL that buf must also hold. */
    if ( l.len + 1 > REMUS_CKPT_RECORD_MAX || l.len + 2 > len )
        return -1;

    memcpy(buf, l.buf, l.len);
    buf[l.len] = '\n';
    buf[l.len + 1] = '\0';

    return (int)(l.len + 1);
}

/* ------------------------------------------------------------------ */
/* Control line parsing                                                */
/* ------------------------------------------------------------------ */

/* The control keys, their spelling and their bounds. */
static const struct ctl_key {
    const char *prefix;
    unsigned int key;
    uint64_t min, max;
} ctl_keys[] = {
    { "interval_ms=", REMUS_CKPT_CTL_INTERVAL_MS,
      1, REMUS_CKPT_INTERVAL_MAX_MS },
    { "budget_pages=", REMUS_CKPT_CTL_BUDGET_PAGES,
      0, REMUS_CKPT_BUDGET_MAX_PAGES },
};

/*
 * Canonical decimal in line[i..len) within [min, max], blanks allowed
 * after it: 0 with *value set, or -1.
 */
static int parse_value(const char *line, size_t i, size_t len,
                       uint64_t min, uint64_t max, uint64_t *value)
{
    uint64_t v = 0;

    /*
     * Canonical decimal only: no sign, no leading zero ("0" alone is
     * zero), so a value has exactly one spelling.  The bound is checked
     * per digit, so overlong numbers are rejected without overflowing.
     */
    if ( i >= len || line[i] < '0' || line[i] > '9' )
        return -1;
    if ( line[i] == '0' )
        i++;
    else
    {
        for ( ; i < len && line[i] >= '0' && line[i] <= '9'; i++ )
        {
            v = v * 10 + (uint64_t)(line[i] - '0');
            if ( v > max )
                return -1;
        }
    }
    if ( v < min )
        return -1;

    /* Blanks and CR (from "echo" or CRLF writers) may trail; nothing else. */
    for ( ; i < len; i++ )
    {
        if ( line[i] != ' ' && line[i] != '\t' && line[i] != '\r' )
            return -1;
    }

    *value = v;
    return 0;
}

int remus_ckpt_parse_control_kv(const char *line, size_t len,
                                unsigned int *key, uint64_t *value)
{
    const struct ctl_key *k;
    size_t plen;
    size_t i;

    if ( !line || !key || !value )
        return -1;

    for ( i = 0; i < sizeof(ctl_keys) / sizeof(ctl_keys[0]); i++ )
    {
        k = &ctl_keys[i];
        plen = strlen(k->prefix);
        if ( len <= plen || memcmp(line, k->prefix, plen) )
            continue;
        if ( parse_value(line, plen, len, k->min, k->max, value) )
            return -1;
        *key = k->key;
        return 0;
    }

    return -1;
}

unsigned int remus_ckpt_parse_control(const char *line, size_t len)
{
    unsigned int key;
    uint64_t v;

    if ( remus_ckpt_parse_control_kv(line, len, &key, &v) ||
         key != REMUS_CKPT_CTL_INTERVAL_MS )
        return 0;

    return (unsigned int)v;
}

/* ------------------------------------------------------------------ */
/* Control channel                                                     */
/* ------------------------------------------------------------------ */

/*
 * Give up on control for the life of rc.  Exactly one line on stderr: a
 * misconfigured control pipe must be visible, but must not flood the log
 * of a save that goes on for days.  Once is structural: nothing leaves
 * CHAN_OFF, and only a usable channel can be refused.
 */
static void ctl_refuse(struct remus_ckpt *rc, const char *what,
                       const char *reason)
{
    chan_close(&rc->ctl);
    rc->ctl.fd = -1;
    rc->ctl.state = CHAN_OFF;

    fprintf(stderr, "remus-ckpt: refusing control %s: %s\n",
            what ? what : "(unset)", reason);
}

/* A partial line is lost (EOF, replaced FIFO): it counts as rejected. */
static void ctl_discard_partial(struct remus_ckpt *rc)
{
    if ( rc->line_len || rc->line_long )
        rc->ctl_rejected++;
    rc->line_len = 0;
    rc->line_long = 0;
}

static void ctl_end_line(struct remus_ckpt *rc)
{
    unsigned int key = 0;
    uint64_t v = 0;

    /* Every valid line replaces the last of its key: the last one wins. */
    if ( rc->line_long ||
         remus_ckpt_parse_control_kv(rc->line, rc->line_len, &key, &v) )
        rc->ctl_rejected++;
    else if ( key == REMUS_CKPT_CTL_BUDGET_PAGES )
        rc->cmd_budget_pages = v;
    else
        rc->cmd_interval_ms = (unsigned int)v;

    rc->line_len = 0;
    rc->line_long = 0;
}

static void ctl_feed(struct remus_ckpt *rc, const char *buf, size_t n)
{
    size_t i;

    for ( i = 0; i < n; i++ )
    {
        if ( buf[i] == '\n' )
            ctl_end_line(rc);
        else if ( rc->line_len < sizeof(rc->line) )
            rc->line[rc->line_len++] = buf[i];
        else
            rc->line_long = 1;
    }
}

/*
 * Open the control FIFO by path.  O_NONBLOCK so that open() does not wait
 * for a writer; the checks are made with fstat() on the opened fd, so what
 * is checked is what is read (no window between check and open).
 */
static void ctl_open_path(struct remus_ckpt *rc)
{
    struct stat st;
    int fd;

    fd = open(rc->ctl.path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    if ( fd < 0 )
    {
        /* Not there (yet, or being re-created): try again next checkpoint. */
        if ( errno == ENOENT || errno == EINTR )
            return;
        ctl_refuse(rc, rc->ctl.path, strerror(errno));
        return;
    }
    rc->ctl.fd = fd;

    if ( fstat(fd, &st) )
        ctl_refuse(rc, rc->ctl.path, strerror(errno));
    else if ( !S_ISFIFO(st.st_mode) )
        ctl_refuse(rc, rc->ctl.path, "not a FIFO");
    else if ( st.st_uid != geteuid() )
        ctl_refuse(rc, rc->ctl.path, "not owned by this user");
    else if ( st.st_mode & (S_IRWXG | S_IRWXO) )
        ctl_refuse(rc, rc->ctl.path, "mode wider than 0600");
    else
        chan_note_identity(&rc->ctl, &st);
}

/*
 * A control fd:N was handed over by the caller: it only has to be a pipe or
 * FIFO open for reading.  Checked at open, while N is surely still the
 * caller's fd.  Returns NULL or why it cannot be used.
 */
static const char *ctl_check_fd(int fd)
{
    struct stat st;

    if ( fstat(fd, &st) )
        return strerror(errno);
    if ( !S_ISFIFO(st.st_mode) )
        return "not a pipe or FIFO";

    return fd_check(fd, O_WRONLY);
}

/*
 * Make sure the control fd is open and acceptable; -1 if there is none.
 * (ctl.fd is -1 in every state but an open CHAN_PATH or CHAN_FD.)
 */
static int ctl_ensure(struct remus_ckpt *rc)
{
    if ( rc->ctl.state != CHAN_PATH )
        return rc->ctl.fd;

    if ( rc->ctl.fd >= 0 && chan_path_changed(&rc->ctl) )
    {
        /* The FIFO was removed or re-created: follow the path. */
        ctl_discard_partial(rc);
        chan_close(&rc->ctl);
    }
    if ( rc->ctl.fd < 0 )
        ctl_open_path(rc);

    return rc->ctl.fd;
}

/*
 * Stop reading the current control fd, losing (and counting) a partial
 * line: an fd:N is the caller's and is just no longer used; a path is
 * closed, to be reopened by whoever wants it back.
 */
static void ctl_drop(struct remus_ckpt *rc)
{
    ctl_discard_partial(rc);
    if ( rc->ctl.state == CHAN_FD )
    {
        rc->ctl.state = CHAN_OFF;
        rc->ctl.fd = -1;
    }
    else
        chan_close(&rc->ctl);
}

/*
 * All writers closed the control pipe.  Deliberate decision: a FIFO is
 * closed and reopened by path, because a read end that has seen EOF keeps
 * reporting POLLHUP to poll() until it is reopened (the gate would spin),
 * and because the consumer may come back with a new FIFO.  A partial line
 * left by the writer is discarded and counted.  An fd:N pipe whose writers
 * are gone can never see new data: it is just no longer used.
 */
static int ctl_eof(struct remus_ckpt *rc)
{
    ctl_drop(rc);
    if ( rc->ctl.state == CHAN_PATH )
        ctl_open_path(rc);

    return rc->ctl.fd;
}

/*
 * Drain everything available on the control pipe without blocking.  At
 * most one reopen after EOF per call: a reopened FIFO with no writer reads
 * EOF again at once, and that is not news.
 */
static void ctl_read(struct remus_ckpt *rc)
{
    char buf[256];
    ssize_t n;
    int fd = ctl_ensure(rc);
    int reopened = 0;

    while ( fd >= 0 )
    {
        n = read(fd, buf, sizeof(buf));
        if ( n > 0 )
        {
            ctl_feed(rc, buf, (size_t)n);
            continue;
        }
        if ( n == 0 )
        {
            if ( reopened )
                break;
            fd = ctl_eof(rc);
            reopened = 1;
            continue;
        }
        if ( errno == EINTR )
            continue;
        if ( errno == EAGAIN || errno == EWOULDBLOCK )
            break;

        /* A read error on a pipe is not expected: stop using it quietly. */
        ctl_drop(rc);
        break;
    }
}

/* ------------------------------------------------------------------ */
/* Dirty-page budget                                                   */
/* ------------------------------------------------------------------ */

/*
 * With a probe (remus_ckpt_set_probe()) and a commanded budget_pages, the
 * gate measures the checkpoint while it grows and ends its wait before the
 * dirty count reaches the budget; the interval's deadline still caps the
 * wait.  The rule (docs/protocol.md, "Dirty-page budget"):
 *
 *  - The first probe is made at once; the count is taken to have grown
 *    from 0 when the guest resumed after the previous checkpoint (its
 *    log-dirty CLEAN was made while paused).
 *  - rate = growth between the last two points (that origin, then each
 *    probe), pages/ns.  lat = the previous checkpoint's t_suspended -
 *    t_suspend: the guest keeps dirtying between the end of the wait and
 *    its pause.
 *  - The time left before the wait must end is
 *        left = (budget - dirty) / rate - lat.
 *    The wait ends (trigger=budget) when dirty >= budget or left <=
 *    min_period, i.e. when dirty + rate * (lat + min_period) >= budget:
 *    waiting one more probe period would overshoot.
 *  - Otherwise the next probe is made after
 *        clamp(left / 2, min_period, max_period),
 *    so probes close in on the budget, halving the time left, and the
 *    undershoot is at most about rate * min_period pages.  While nothing
 *    grew, after clamp(time since the origin, min_period, max_period):
 *    probes back off, doubling, on an idle guest.
 *  - min_period = max(1 ms, 100 x the mean probe cost measured with the
 *    clock): probes take at most ~1 % of the wait.  max_period =
 *    max(min_period, min(interval / 4, 16 x min_period)): at least
 *    ~0.06 % of the wait, so that a guest that starts dirtying fast after
 *    an idle spell is seen within 16 x min_period (32 ms for a 20 us
 *    probe), not a quarter of a long interval later.
 *  - A probe that fails stops probing for this checkpoint (probe_errors
 *    counts it); the interval paces as without a budget.
 *  - A new budget on the control channel is probed against at once.
 * Without a probe or a budget nothing here is called.
 */
#define PROBE_MIN_PERIOD_NS NSEC_PER_MSEC
#define PROBE_COST_FACTOR   100  /* period >= 100 x cost: <= 1 % of time */
#define PROBE_MAX_DIVISOR   4    /* period <= interval / 4 */
#define PROBE_MAX_FACTOR    16   /* period <= 16 x min_period */

/* One gate's probing: the last two points of the dirty count. */
struct budget {
    uint64_t pages;     /* the budget probed against; 0: none yet */
    uint64_t origin;    /* when the count was 0: the guest resumed */
    int failed;         /* a probe failed: no more in this gate */
    uint64_t t0, d0;    /* point before the last (first: the origin, 0) */
    uint64_t t1, d1;    /* last probe (d1 is dirty_at_trigger) */
    uint64_t next;      /* next probe due at */
    uint64_t lat_ns;    /* expected end of wait -> suspended */
    uint64_t probes;
    uint64_t probe_ns;
};

static uint64_t clock_now(const struct remus_ckpt *rc)
{
    return rc->clock_now ? rc->clock_now(rc->clock_arg) : now_ns();
}

/* Where the count starts (guest resumed) and how late a suspend lands. */
static void budget_begin(const struct remus_ckpt *rc, struct budget *bg)
{
    const struct remus_ckpt_record *prev = &rc->last;

    memset(bg, 0, sizeof(*bg));
    bg->origin = prev->t_resumed ? prev->t_resumed :
                 prev->t_suspended ? prev->t_suspended : rc->prev_suspend;
    bg->t0 = bg->origin;
    if ( prev->t_suspend && prev->t_suspended > prev->t_suspend )
        bg->lat_ns = prev->t_suspended - prev->t_suspend;
}

static uint64_t budget_min_period(const struct remus_ckpt *rc)
{
    uint64_t p = rc->probe_cost_ns * PROBE_COST_FACTOR;

    return p > PROBE_MIN_PERIOD_NS ? p : PROBE_MIN_PERIOD_NS;
}

/* Call the probe, timing it with the clock.  0, or -1 if it failed. */
static int budget_probe(struct remus_ckpt *rc, struct budget *bg,
                        uint64_t *now)
{
    uint64_t start = *now, dirty = 0, cost;
    int r = rc->probe(rc->probe_arg, &dirty);

    *now = clock_now(rc);
    cost = *now > start ? *now - start : 0;
    bg->probes++;
    bg->probe_ns += cost;
    if ( r )
    {
        bg->failed = 1;
        rc->probe_errors++;
        return -1;
    }

    rc->probe_cost_ns = rc->probe_cost_ns
                        ? (7 * rc->probe_cost_ns + cost) / 8 : cost;
    if ( bg->probes > 1 )
    {
        bg->t0 = bg->t1;
        bg->d0 = bg->d1;
    }
    bg->t1 = start + cost / 2;
    bg->d1 = dirty;

    return 0;
}

/* After a probe at now: 1 if the wait must end, else schedule the next. */
static int budget_decide(const struct remus_ckpt *rc, struct budget *bg,
                         unsigned int interval, uint64_t now)
{
    uint64_t min_p = budget_min_period(rc);
    uint64_t max_p = interval * NSEC_PER_MSEC / PROBE_MAX_DIVISOR;
    double rate = 0, left;

    if ( max_p > PROBE_MAX_FACTOR * min_p )
        max_p = PROBE_MAX_FACTOR * min_p;
    if ( max_p < min_p )
        max_p = min_p;
    if ( bg->d1 >= bg->pages )
        return 1;

    if ( bg->t1 > bg->t0 && bg->d1 > bg->d0 )
        rate = (double)(bg->d1 - bg->d0) / (double)(bg->t1 - bg->t0);
    if ( rate <= 0 )
    {
        /* Nothing grew yet: back off, doubling the time since the origin. */
        left = now > bg->origin ? (double)(now - bg->origin) : 0;
        bg->next = now + (left < (double)min_p ? min_p :
                          left > (double)max_p ? max_p : (uint64_t)left);
        return 0;
    }

    left = (double)(bg->pages - bg->d1) / rate - (double)bg->lat_ns;
    if ( left <= (double)min_p )
        return 1;
    left /= 2;
    bg->next = now + (left < (double)min_p ? min_p :
                      left > (double)max_p ? max_p : (uint64_t)left);

    return 0;
}

/*
 * In the gate's loop, before it sleeps: probe if one is due.  Returns 1
 * if the budget ends the wait.  *now is updated after a probe.
 */
static int budget_poll(struct remus_ckpt *rc, struct budget *bg,
                       unsigned int interval, uint64_t *now)
{
    if ( !rc->probe || !rc->cmd_budget_pages || bg->failed )
        return 0;

    /* A new budget is probed against at once. */
    if ( bg->pages != rc->cmd_budget_pages )
    {
        bg->pages = rc->cmd_budget_pages;
        bg->next = *now;
    }
    if ( *now < bg->next )
        return 0;
    if ( budget_probe(rc, bg, now) )
        return 0;

    return budget_decide(rc, bg, interval, *now);
}

/* When the gate must wake: the next probe, if before the deadline. */
static uint64_t budget_wake(const struct remus_ckpt *rc,
                            const struct budget *bg, uint64_t deadline)
{
    if ( !rc->probe || !rc->cmd_budget_pages || bg->failed || !bg->pages )
        return deadline;

    return bg->next < deadline ? bg->next : deadline;
}

/* What ended a wait whose deadline has passed. */
static unsigned int gate_trigger(uint64_t wait_start, uint64_t deadline,
                                 uint64_t slept_for, uint64_t now)
{
    if ( !wait_start )
        return REMUS_CKPT_TRIGGER_NONE;
    if ( slept_for && deadline < slept_for && now < slept_for )
        return REMUS_CKPT_TRIGGER_CONTROL;

    return REMUS_CKPT_TRIGGER_INTERVAL;
}

void remus_ckpt_set_probe(struct remus_ckpt *ckpt, remus_ckpt_probe_fn *probe,
                          void *arg)
{
    if ( !ckpt )
        return;

    ckpt->probe = probe;
    ckpt->probe_arg = probe ? arg : NULL;
}

void remus_ckpt_set_clock(struct remus_ckpt *ckpt, remus_ckpt_now_fn *now,
                          remus_ckpt_sleep_fn *sleep_until, void *arg)
{
    if ( !ckpt )
        return;

    if ( !now || !sleep_until )
    {
        now = NULL;
        sleep_until = NULL;
        arg = NULL;
    }
    ckpt->clock_now = now;
    ckpt->clock_sleep = sleep_until;
    ckpt->clock_arg = arg;
}

/* ------------------------------------------------------------------ */
/* Pacing gate                                                         */
/* ------------------------------------------------------------------ */

/*
 * Sleep until deadline (CLOCK_MONOTONIC ns) or until the control pipe
 * becomes readable, whichever comes first.  Returns with nothing learnt:
 * the caller re-reads control and recomputes the deadline.
 */
static void gate_sleep(struct remus_ckpt *rc, uint64_t deadline, uint64_t now)
{
    struct pollfd pfd;
    struct timespec ts;
    int fd = rc->ctl.fd;

    /* Dirty-page budget: an injected clock sleeps its own way. */
    if ( rc->clock_sleep )
    {
        rc->clock_sleep(rc->clock_arg, deadline);
        return;
    }

    if ( fd < 0 )
    {
        /* Absolute time: an EINTR restart does not stretch the wait. */
        ts = ns_to_timespec(deadline);
        clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
        return;
    }

    pfd.fd = fd;
    pfd.events = POLLIN;
    pfd.revents = 0;
    ts = ns_to_timespec(deadline - now);

    if ( ppoll(&pfd, 1, &ts, NULL) > 0 && (pfd.revents & POLLNVAL) )
    {
        /* Cannot happen with an fd we hold; do not spin if it does. */
        ctl_refuse(rc, rc->ctl.path ? rc->ctl.path : "fd", "invalid fd");
    }
}

void remus_ckpt_gate(struct remus_ckpt *rc, int live)
{
    uint64_t now, deadline, wait_start = 0;
    unsigned int interval = 0;
    /* Dirty-page budget: what ended the wait, the probing state. */
    unsigned int trigger = REMUS_CKPT_TRIGGER_NONE;
    uint64_t wake, slept_for = 0;
    struct budget bg;

    if ( !rc )
        return;

    rc->cur.t_gate = clock_now(rc);
    rc->cur.live = live ? 1 : 0;
    budget_begin(rc, &bg);

    ctl_read(rc);

    /*
     * Only a Remus stream past its live round with a previous checkpoint
     * is paced; COLO decides its checkpoints itself.  The deadline counts
     * from the previous suspend, and is recomputed after every control
     * input: a shorter interval ends the wait early, a longer one extends
     * it.  A deadline already passed is not caught up on.  A budget ends
     * the wait earlier still (budget_poll()).
     */
    if ( rc->stream == REMUS_CKPT_STREAM_REMUS && !live && rc->prev_suspend )
    {
        for ( ;; )
        {
            interval = rc->cmd_interval_ms;
            if ( !interval )
                break;
            deadline = rc->prev_suspend + interval * NSEC_PER_MSEC;
            now = clock_now(rc);
            if ( now >= deadline )
            {
                trigger = gate_trigger(wait_start, deadline, slept_for, now);
                break;
            }
            if ( !wait_start )
                wait_start = now;
            /* Dirty-page budget: BEGIN */
            if ( budget_poll(rc, &bg, interval, &now) )
            {
                trigger = REMUS_CKPT_TRIGGER_BUDGET;
                break;
            }
            wake = budget_wake(rc, &bg, deadline);
            slept_for = deadline;
            if ( wake > now )
                gate_sleep(rc, wake, now);
            /* Dirty-page budget: END */
            ctl_read(rc);
        }
    }

    now = clock_now(rc);
    rc->cur.t_suspend = now;
    rc->cur.gate_wait_ns = wait_start ? now - wait_start : 0;
    rc->cur.interval_ms = interval;
    rc->prev_suspend = now;
    /* Dirty-page budget */
    rc->cur.trigger = trigger;
    rc->cur.dirty_at_trigger = bg.d1;
    rc->cur.probes = bg.probes;
    rc->cur.probe_ns = bg.probe_ns;
}

/* ------------------------------------------------------------------ */
/* Stats channel                                                       */
/* ------------------------------------------------------------------ */

/*
 * Open the stats path for writing.  O_NONBLOCK: a FIFO without a reader
 * fails with ENXIO instead of blocking, and a full one with EAGAIN.  No
 * O_CREAT: a typo must not litter files.  O_APPEND is harmless on a FIFO
 * and keeps concurrent writers of a regular file from overwriting.  now is
 * the time of this record: the identity noted here is as good as a check.
 */
static int stats_open_path(struct remus_ckpt *rc, uint64_t now)
{
    struct stat st;
    int fd;

    fd = open(rc->stats.path,
              O_WRONLY | O_NONBLOCK | O_APPEND | O_CLOEXEC | O_NOCTTY);
    if ( fd < 0 )
        return -1;

    if ( fstat(fd, &st) )
    {
        close(fd);
        return -1;
    }

    rc->stats.fd = fd;
    chan_note_identity(&rc->stats, &st);
    rc->stats_checked = now;

    return fd;
}

/*
 * The fd to write the record of time now to, or -1.
 *
 * A stats path may be removed and created again (a consumer restarted with
 * a new FIFO): records must then follow the path.  stat() on every record
 * cost as much as the write itself, so the path's identity is checked:
 *  - when the fd is not open: it is opened by path, which follows anyway;
 *  - after a write that failed (stats_write()): if the old FIFO lost its
 *    reader the write fails with EPIPE, if it is full with EAGAIN;
 *  - and at the first record STATS_RECHECK_NS (100 ms) or more after the
 *    last check, for the one case writes cannot tell: the old FIFO still
 *    has a reader that keeps reading.  Records keep going to that reader
 *    until then.
 */
static int stats_ensure(struct remus_ckpt *rc, uint64_t now)
{
    if ( rc->stats.state == CHAN_FD )
        return rc->stats.fd;
    if ( rc->stats.state != CHAN_PATH )
        return -1;

    if ( rc->stats.fd >= 0 && now - rc->stats_checked >= STATS_RECHECK_NS )
    {
        rc->stats_checked = now;
        if ( chan_path_changed(&rc->stats) )
            chan_close(&rc->stats);
    }
    if ( rc->stats.fd < 0 )
        return stats_open_path(rc, now);

    return rc->stats.fd;
}

/*
 * write() without raising SIGPIPE in the host process.  Returns 0 if all
 * of buf was written, else -1 with errno set (0 for a short write).
 *
 * SIGPIPE is blocked around the write (and only around it: the caller's
 * mask is restored before returning), and a SIGPIPE this write raised
 * (EPIPE) is consumed with sigtimedwait() before unblocking.  It must not
 * consume a SIGPIPE that was pending before, which belongs to someone
 * else: standard signals do not queue, so ours and that one are a single
 * pending SIGPIPE, and taking it would lose the other.  That case is told
 * apart without a sigpending() on every record:
 *  - If the caller had SIGPIPE unblocked (libxl-save-helper does), no
 *    SIGPIPE can be pending for this thread when we block it: it would
 *    have been delivered on the way back to user mode.  Whatever is
 *    pending after an EPIPE is ours.  The one exception is a race no
 *    design avoids: a SIGPIPE sent to the process at the very moment of
 *    the write (e.g. by kill(), while on its way to another thread)
 *    merges with ours and is consumed; with sigpending() before the write
 *    one arriving during the write was consumed just the same.
 *  - If the caller had SIGPIPE blocked, one may be pending: then, and only
 *    then, sigpending() is asked before the write.
 * The common case is therefore block, write, restore: no sigpending(),
 * and no sigtimedwait() unless the write failed with EPIPE.
 */
static int write_nosigpipe(int fd, const char *buf, size_t len)
{
    static const struct timespec zero = { 0, 0 };
    sigset_t pipe_set, old_set, pending;
    int was_pending = 0;
    ssize_t n;
    int err;

    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    if ( pthread_sigmask(SIG_BLOCK, &pipe_set, &old_set) )
    {
        /* Cannot happen with a valid set; never write unprotected. */
        errno = EINVAL;
        return -1;
    }

    if ( sigismember(&old_set, SIGPIPE) == 1 && !sigpending(&pending) )
        was_pending = sigismember(&pending, SIGPIPE) == 1;

    do {
        n = write(fd, buf, len);
    } while ( n < 0 && errno == EINTR );
    err = n < 0 ? errno : 0;

    if ( err == EPIPE && !was_pending )
    {
        while ( sigtimedwait(&pipe_set, NULL, &zero) < 0 && errno == EINTR )
            ;
    }

    pthread_sigmask(SIG_SETMASK, &old_set, NULL);

    errno = err;
    return n == (ssize_t)len ? 0 : -1;
}

/*
 * After a failed write to the stats path: keep the fd (1) only for EAGAIN
 * on a path that still names the same file (the reader is slow).  Anything
 * else (EPIPE: the reader went away; EAGAIN on a replaced path: an old
 * reader stopped reading) closes it (0).
 */
static int stats_keep_after(struct remus_ckpt *rc, int err, uint64_t now)
{
    if ( err == EAGAIN || err == EWOULDBLOCK )
    {
        rc->stats_checked = now;
        if ( !chan_path_changed(&rc->stats) )
            return 1;
    }

    chan_close(&rc->stats);
    return 0;
}

/*
 * Write one formatted record of time now; on any failure the record is
 * dropped.  On a path, a write that failed with EPIPE, or with EAGAIN on a
 * replaced path, is followed by one more try on the path opened again: a
 * FIFO re-created by a new consumer then gets this record instead of
 * losing it.
 */
static int stats_write(struct remus_ckpt *rc, const char *buf, size_t len,
                       uint64_t now)
{
    int fd = stats_ensure(rc, now);
    int err;

    if ( fd < 0 )
        return -1;

    if ( !write_nosigpipe(fd, buf, len) )
        return 0;

    /* fd:N is the caller's: it is kept whatever happened. */
    err = errno;
    if ( rc->stats.state != CHAN_PATH || stats_keep_after(rc, err, now) )
        return -1;

    /* Only a lost reader or a replaced path can be cured by reopening. */
    if ( err != EPIPE && err != EAGAIN && err != EWOULDBLOCK )
        return -1;

    fd = stats_open_path(rc, now);
    if ( fd < 0 )
        return -1;

    if ( !write_nosigpipe(fd, buf, len) )
        return 0;

    stats_keep_after(rc, errno, now);
    return -1;
}

/* ------------------------------------------------------------------ */
/* Public entry points                                                 */
/* ------------------------------------------------------------------ */

struct remus_ckpt *remus_ckpt_open_with(uint32_t domid, unsigned int stream,
                                        uint32_t page_size,
                                        const char *stats_spec,
                                        const char *control_spec)
{
    struct remus_ckpt *rc;
    const char *why;

    if ( (!stats_spec || !*stats_spec) && (!control_spec || !*control_spec) )
        return NULL;
    if ( !stream_name(stream) )
        return NULL;

    rc = calloc(1, sizeof(*rc));
    if ( !rc )
        return NULL;

    rc->domid = domid;
    rc->stream = stream;
    rc->page_size = page_size;

    /*
     * A stats spec that cannot be used is reported once; the records are
     * then all counted as dropped (they are still kept for _last()).
     */
    why = chan_init(&rc->stats, stats_spec);
    if ( !why && rc->stats.state == CHAN_FD )
        why = fd_check(rc->stats.fd, O_RDONLY);
    if ( why )
    {
        fprintf(stderr, "remus-ckpt: cannot use stats %s: %s\n",
                stats_spec, why);
        rc->stats.state = CHAN_OFF;
        rc->stats.fd = -1;
    }

    why = chan_init(&rc->ctl, control_spec);
    if ( !why && rc->ctl.state == CHAN_FD )
        why = ctl_check_fd(rc->ctl.fd);
    if ( why )
        ctl_refuse(rc, control_spec, why);

    /* The control FIFO is opened at the first gate, not here. */
    return rc;
}

struct remus_ckpt *remus_ckpt_open(uint32_t domid, unsigned int stream,
                                   uint32_t page_size)
{
    return remus_ckpt_open_with(domid, stream, page_size,
                                getenv(REMUS_CKPT_ENV_STATS),
                                getenv(REMUS_CKPT_ENV_CONTROL));
}

void remus_ckpt_close(struct remus_ckpt *rc)
{
    if ( !rc )
        return;

    chan_close(&rc->stats);
    chan_close(&rc->ctl);
    free(rc->stats.path);
    free(rc->ctl.path);
    free(rc);
}

void remus_ckpt_mark(struct remus_ckpt *rc, unsigned int mark)
{
    uint64_t *t;

    if ( !rc )
        return;

    switch ( mark )
    {
    case REMUS_CKPT_MARK_SUSPENDED:
        t = &rc->cur.t_suspended;
        break;
    case REMUS_CKPT_MARK_SENT:
        t = &rc->cur.t_sent;
        break;
    case REMUS_CKPT_MARK_RESUMED:
        t = &rc->cur.t_resumed;
        break;
    default:
        return;
    }

    *t = clock_now(rc);
}

void remus_ckpt_dirty(struct remus_ckpt *rc, uint64_t dirty_pages,
                      uint64_t deferred_pages)
{
    if ( !rc )
        return;

    rc->cur.dirty_pages = dirty_pages;
    rc->cur.deferred_pages = deferred_pages;
}

void remus_ckpt_wrote(struct remus_ckpt *rc, uint64_t bytes, uint64_t pages)
{
    if ( !rc )
        return;

    rc->cur.bytes_sent += bytes;
    rc->cur.pages_sent += pages;
}

void remus_ckpt_wrote_raw(struct remus_ckpt *rc, uint64_t bytes)
{
    if ( !rc )
        return;

    rc->cur.bytes_raw += bytes;
}

void remus_ckpt_emit(struct remus_ckpt *rc)
{
    char buf[REMUS_CKPT_RECORD_MAX + 1];
    int n;

    if ( !rc )
        return;

    rc->cur.t_done = clock_now(rc);
    rc->cur.seq = rc->seq;
    rc->cur.domid = rc->domid;
    rc->cur.stream = rc->stream;
    rc->cur.page_size = rc->page_size;
    rc->cur.cmd_interval_ms = rc->cmd_interval_ms;
    rc->cur.dropped = rc->dropped;
    rc->cur.ctl_rejected = rc->ctl_rejected;
    rc->cur.budget_pages = rc->cmd_budget_pages;
    rc->cur.probe_errors = rc->probe_errors;

    if ( rc->stats.state != CHAN_UNSET )
    {
        n = remus_ckpt_format(&rc->cur, buf, sizeof(buf));
        if ( n < 0 || stats_write(rc, buf, (size_t)n, rc->cur.t_done) )
            rc->dropped++;
    }

    rc->last = rc->cur;

    /* Next checkpoint; prev_suspend (kept by the gate) survives this. */
    memset(&rc->cur, 0, sizeof(rc->cur));
    rc->seq++;
}

int remus_ckpt_last(const struct remus_ckpt *rc,
                    struct remus_ckpt_record *out)
{
    if ( !rc || !out || !rc->seq )
        return -1;

    *out = rc->last;
    return 0;
}
