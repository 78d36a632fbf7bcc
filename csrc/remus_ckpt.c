/* SPDX-License-Identifier: LGPL-2.1-only */
/*
 * remus_ckpt.c - per-checkpoint records and interval pacing for Remus/COLO.
 *
 * Compiled into libxenguest and run inside libxl-save-helper, so the rules
 * are those of the save loop: never block except when pacing on purpose,
 * never fail the save, never kill the host process (it does not ignore
 * SIGPIPE).  Every problem is counted and reported in the next record.
 *
 * Paths and fds come from a dom0 that may be hostile: a path is opened
 * without following a final symlink, without blocking and without becoming
 * a controlling tty, and what was opened (never the name) is checked with
 * fstat(): only a FIFO of our euid, mode 0600 or narrower, is used.
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
#include <sys/socket.h>
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

/*
 * Work done on control input per read (one gate wake): at most this many
 * bytes, and no further read() once this many lines were parsed.  A writer
 * flooding the pipe then costs a checkpoint microseconds per wake, not
 * whatever it manages to write while the pipe is drained; the rest is read
 * at the next wake.
 */
#define CTL_READ_MAX_BYTES 4096
#define CTL_READ_MAX_LINES 128

#define NSEC_PER_MSEC 1000000ULL
#define NSEC_PER_SEC  1000000000ULL

/*
 * How often an open path is checked with stat() for having been replaced
 * while its fd still works (see chan_due()): stat() on every record cost as
 * much as the write itself.
 */
#define PATH_RECHECK_NS (100 * NSEC_PER_MSEC)

/* How often a path that was refused (wrong type, owner, mode) is retried. */
#define REFUSED_RECHECK_NS NSEC_PER_SEC

enum chan_state {
    CHAN_UNSET,   /* spec NULL or "": not configured */
    CHAN_PATH,    /* a path: opened, closed and reopened here */
    CHAN_FD,      /* "fd:N": belongs to the caller, never closed here */
    CHAN_OFF,     /* configured but unusable (bad spec, refused fd, EOF) */
};

/* One end of a pipe to the consumer: the stats writer or control reader. */
struct chan {
    enum chan_state state;
    char *path;   /* the spec: a path (CHAN_PATH) or "fd:N" */
    int fd;       /* -1: not open */
    int sock;     /* CHAN_FD: a datagram or seqpacket socket (send()) */
    dev_t dev;    /* identity of what fd refers to, for CHAN_PATH */
    ino_t ino;
    uint64_t checked; /* last look at the path: stat() or open() (ns) */
    int refused;  /* the last open of the path was refused */
    int warned;   /* a stderr line was printed; cleared once it works */
};

struct remus_ckpt {
    uint32_t domid;
    uint32_t page_size;
    unsigned int stream;

    struct chan stats;
    int stats_reopened;     /* path opened since the last record written */
    struct chan ctl;

    /* Control line being assembled across reads. */
    char line[CTL_LINE_MAX];
    size_t line_len;
    int line_long;          /* line overflowed: reject it at its newline */
    uint64_t ctl_lines;     /* lines ended so far (valid or not) */

    enum remus_ckpt_ctl_state ctl_cond; /* UNSET, OK, NOWRITER, REFUSED,
                                           REOPENING: as last seen */
    uint64_t ctl_gone_since;  /* no writer since (ns); 0: a writer is there */
    uint32_t fallback_ms;     /* 0: none */
    uint64_t ctl_timeout_ns;
    int fallback;             /* pacing at fallback_ms until a new command */

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
 * Parse a plain decimal (no sign, blanks or leading zero) in 1..max.
 * Returns it, or 0 if s is not one.
 */
static unsigned long parse_decimal(const char *s, unsigned long max)
{
    unsigned long v = 0;

    if ( *s < '1' || *s > '9' )
        return 0;
    for ( ; *s; s++ )
    {
        if ( *s < '0' || *s > '9' )
            return 0;
        v = v * 10 + (unsigned long)(*s - '0');
        if ( v > max )
            return 0;
    }

    return v;
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
    unsigned long v;

    if ( strncmp(spec, "fd:", 3) )
        return 0;

    if ( p[0] == '0' && p[1] == '\0' )
    {
        *fd = 0;
        return 1;
    }

    v = parse_decimal(p, INT_MAX);
    if ( !v )
        return -1;

    *fd = (int)v;
    return 1;
}

/*
 * One stderr line per episode of trouble on a channel: from the first
 * problem until the channel works again (chan_healed()).  A channel that
 * stays broken for days says so once; one that heals and breaks again says
 * so again, at most once per such change.
 */
static void chan_warn(struct chan *ch, const char *what, const char *spec,
                      const char *reason)
{
    if ( ch->warned )
        return;
    ch->warned = 1;
    fprintf(stderr, "remus-ckpt: %s %s: %s\n", what,
            spec ? spec : "(unset)", reason);
}

static void chan_healed(struct chan *ch)
{
    ch->warned = 0;
}

/*
 * Set up a channel from its spec.  Returns NULL, or a reason why the spec
 * cannot be used (the caller then turns the channel CHAN_OFF).
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
        return "invalid fd:N spec";

    /* For an fd:N, the spec is kept only to name it in messages. */
    ch->path = strdup(spec);
    if ( !ch->path )
        return "out of memory";
    if ( r > 0 )
    {
        ch->state = CHAN_FD;
        ch->fd = fd;
        return NULL;
    }
    ch->state = CHAN_PATH;

    return NULL;
}

/* Give up on a channel for good (an fd:N, or a spec that cannot work). */
static void chan_off(struct chan *ch)
{
    ch->state = CHAN_OFF;
    ch->fd = -1;
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

/*
 * Is it time to look at ch's path again: at most once per period_ns?
 * Marks the look as done when it is.
 */
static int chan_due(struct chan *ch, uint64_t now, uint64_t period_ns)
{
    if ( ch->checked && now - ch->checked < period_ns )
        return 0;
    ch->checked = now;

    return 1;
}

/*
 * Has the path been removed or replaced (e.g. a FIFO deleted and created
 * again) since ch->fd was opened?  One stat() per call; lstat(), as a
 * symlink put in its place is a replacement, not the same file.
 */
static int chan_path_changed(const struct chan *ch)
{
    struct stat st;

    if ( lstat(ch->path, &st) )
        return 1;

    return st.st_dev != ch->dev || st.st_ino != ch->ino;
}

/*
 * What a channel path must be, checked on the opened fd: a FIFO (not a
 * regular file, whose writes block on a hung filesystem and which may be
 * anyone's; not a device or a procfs file, which take bytes as commands),
 * owned by the effective uid, with no group or other permission.
 */
static const char *fifo_check(const struct stat *st)
{
    if ( !S_ISFIFO(st->st_mode) )
        return "not a FIFO";
    if ( st->st_uid != geteuid() )
        return "not owned by this user";
    if ( st->st_mode & (S_IRWXG | S_IRWXO) )
        return "mode wider than 0600";

    return NULL;
}

/*
 * Open ch's path with access mode acc: O_NONBLOCK (neither open() nor I/O
 * waits for the other end), O_NOFOLLOW (a final symlink is refused, not
 * followed; earlier components are the operator's choice), O_NOCTTY, and
 * O_CLOEXEC; no O_CREAT (a typo must not litter files).  What was opened is
 * checked with fstat(), so the file checked is the file used.
 *
 * Returns the fd (also stored in ch->fd, with its identity), or -1 with
 * *why NULL when the path is just not usable yet (absent; a FIFO without a
 * reader) or with *why saying why it is refused.
 */
static int chan_open_path(struct chan *ch, int acc, const char **why)
{
    struct stat st;
    int fd;

    *why = NULL;
    fd = open(ch->path, acc | O_NONBLOCK | O_NOFOLLOW | O_NOCTTY | O_CLOEXEC);
    if ( fd < 0 )
    {
        if ( errno == ELOOP )
            *why = "a symbolic link";
        else if ( errno != ENOENT && errno != ENXIO && errno != EINTR )
            *why = strerror(errno);
        return -1;
    }

    if ( fstat(fd, &st) )
        *why = strerror(errno);
    else
        *why = fifo_check(&st);
    if ( *why )
    {
        close(fd);
        return -1;
    }

    ch->fd = fd;
    ch->dev = st.st_dev;
    ch->ino = st.st_ino;

    return fd;
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

/* Wire names of the channel states, indexed by their enum value. */
static const char *const stats_state_names[] = {
    [REMUS_CKPT_STATS_OK] = "ok",
    [REMUS_CKPT_STATS_REOPENED] = "reopened",
};
static const char *const ctl_state_names[] = {
    [REMUS_CKPT_CTL_UNSET] = "unset",
    [REMUS_CKPT_CTL_OK] = "ok",
    [REMUS_CKPT_CTL_NOWRITER] = "nowriter",
    [REMUS_CKPT_CTL_REFUSED] = "refused",
    [REMUS_CKPT_CTL_REOPENING] = "reopening",
    [REMUS_CKPT_CTL_FALLBACK] = "fallback",
};
#define NR_NAMES(a) (sizeof(a) / sizeof((a)[0]))

/*
 * Append key (" key=") and the name of state v; nothing for 0 (not
 * known).  -1 for a value that has no name: the record is not formatted.
 */
static int line_state(struct line *l, const char *key, uint32_t v,
                      const char *const *names, size_t nr)
{
    if ( !v )
        return 0;
    if ( v >= nr || !names[v] )
        return -1;

    line_append(l, key, strlen(key));
    line_append(l, names[v], strlen(names[v]));

    return 0;
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
/* Wire name of an enum remus_ckpt_end other than NONE; NULL: unknown. */
static const char *end_name(uint32_t end)
{
    switch ( end )
    {
    case REMUS_CKPT_END_FAILOVER:
        return "failover";
    case REMUS_CKPT_END_ABORT:
        return "abort";
    case REMUS_CKPT_END_ERROR:
        return "error";
    default:
        return NULL;
    }
}

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
    if ( line_state(&l, " stats=", rec->stats_state, stats_state_names,
                    NR_NAMES(stats_state_names)) ||
         line_state(&l, " ctl=", rec->ctl_state, ctl_state_names,
                    NR_NAMES(ctl_state_names)) )
        return -1;
    budget_format(&l, rec);
    /* Only when the CLEAN failed: dirty_pages=0 is then no count. */
    if ( rec->clean_error )
        LINE_U64(&l, "clean_error", 1);
    if ( rec->end )
    {
        const char *end = end_name(rec->end);

        if ( !end )
            return -1;
        line_append(&l, " end=", sizeof(" end=") - 1);
        line_append(&l, end, strlen(end));
    }

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
 * What control looks like now.  Leaving "a writer is there" starts the
 * clock of the fallback (ctl_gone_since); coming back stops it.
 */
static void ctl_set_cond(struct remus_ckpt *ckpt,
                         enum remus_ckpt_ctl_state cond, uint64_t now)
{
    ckpt->ctl_cond = cond;
    if ( cond == REMUS_CKPT_CTL_OK )
        ckpt->ctl_gone_since = 0;
    else if ( !ckpt->ctl_gone_since )
        ckpt->ctl_gone_since = now;
}

/*
 * Control cannot be used: one line on stderr per episode (chan_warn()).  A
 * path stays configured and is tried again (ctl_open_path()), so that a
 * FIFO that was wrong for a moment heals; an fd:N never changes, and is
 * given up.
 */
static void ctl_refuse(struct remus_ckpt *ckpt, const char *what,
                       const char *reason, uint64_t now)
{
    chan_close(&ckpt->ctl);
    if ( ckpt->ctl.state != CHAN_PATH )
        chan_off(&ckpt->ctl);
    ckpt->ctl.refused = 1;
    chan_warn(&ckpt->ctl, "refusing control", what, reason);
    ctl_set_cond(ckpt, REMUS_CKPT_CTL_REFUSED, now);
}

/* A partial line is lost (EOF, replaced FIFO): it counts as rejected. */
static void ctl_discard_partial(struct remus_ckpt *ckpt)
{
    if ( ckpt->line_len || ckpt->line_long )
        ckpt->ctl_rejected++;
    ckpt->line_len = 0;
    ckpt->line_long = 0;
}

static void ctl_end_line(struct remus_ckpt *ckpt)
{
    unsigned int key = 0;
    uint64_t v = 0;

    /*
     * Every valid line replaces the last of its key: the last one wins.  A
     * command also ends the fallback: the controller is back.
     */
    if ( ckpt->line_long ||
         remus_ckpt_parse_control_kv(ckpt->line, ckpt->line_len, &key, &v) )
        ckpt->ctl_rejected++;
    else
    {
        if ( key == REMUS_CKPT_CTL_BUDGET_PAGES )
            ckpt->cmd_budget_pages = v;
        else
            ckpt->cmd_interval_ms = (unsigned int)v;
        ckpt->fallback = 0;
    }

    ckpt->ctl_lines++;
    ckpt->line_len = 0;
    ckpt->line_long = 0;
}

static void ctl_feed(struct remus_ckpt *ckpt, const char *buf, size_t n)
{
    size_t i;

    for ( i = 0; i < n; i++ )
    {
        if ( buf[i] == '\n' )
            ctl_end_line(ckpt);
        else if ( ckpt->line_len < sizeof(ckpt->line) )
            ckpt->line[ckpt->line_len++] = buf[i];
        else
            ckpt->line_long = 1;
    }
}

/*
 * Open the control FIFO by path (chan_open_path(): nothing waits for a
 * writer, what is read is what was checked).  A refused path is tried
 * again at most once per REFUSED_RECHECK_NS; an absent one at every call.
 */
static void ctl_open_path(struct remus_ckpt *ckpt, uint64_t now)
{
    const char *why;

    if ( ckpt->ctl.refused && !chan_due(&ckpt->ctl, now, REFUSED_RECHECK_NS) )
        return;
    ckpt->ctl.checked = now;

    if ( chan_open_path(&ckpt->ctl, O_RDONLY, &why) < 0 )
    {
        if ( why )
            ctl_refuse(ckpt, ckpt->ctl.path, why, now);
        else
        {
            /* Not there (yet, or being re-created): not an error. */
            ckpt->ctl.refused = 0;
            ctl_set_cond(ckpt, REMUS_CKPT_CTL_REOPENING, now);
        }
        return;
    }

    ckpt->ctl.refused = 0;
    chan_healed(&ckpt->ctl);
    /* Whether a writer is there, the first read tells (EAGAIN or EOF). */
    ctl_set_cond(ckpt, REMUS_CKPT_CTL_NOWRITER, now);
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
 * (ctl.fd is -1 in every state but an open CHAN_PATH or CHAN_FD.)  An open
 * path is checked for having been replaced at most every PATH_RECHECK_NS,
 * as the stats path is.
 */
static int ctl_ensure(struct remus_ckpt *ckpt, uint64_t now)
{
    if ( ckpt->ctl.state != CHAN_PATH )
        return ckpt->ctl.fd;

    if ( ckpt->ctl.fd >= 0 && chan_due(&ckpt->ctl, now, PATH_RECHECK_NS) &&
         chan_path_changed(&ckpt->ctl) )
    {
        /* The FIFO was removed or re-created: follow the path. */
        ctl_discard_partial(ckpt);
        chan_close(&ckpt->ctl);
    }
    if ( ckpt->ctl.fd < 0 )
        ctl_open_path(ckpt, now);

    return ckpt->ctl.fd;
}

/*
 * The writer is gone (EOF) or the fd broke: stop reading it, losing (and
 * counting) a partial line.  Deliberate decision: a FIFO is closed and
 * reopened by path, because a read end that has seen EOF keeps reporting
 * POLLHUP to poll() until it is reopened (the gate would spin), and
 * because the consumer may come back with a new FIFO.  An fd:N pipe whose
 * writers are gone can never see new data: it is just no longer used.
 * Returns the fd to go on reading, or -1.
 */
static int ctl_gone(struct remus_ckpt *ckpt, uint64_t now)
{
    ctl_discard_partial(ckpt);
    ctl_set_cond(ckpt, REMUS_CKPT_CTL_NOWRITER, now);
    if ( ckpt->ctl.state != CHAN_PATH )
    {
        chan_off(&ckpt->ctl);
        return -1;
    }

    chan_close(&ckpt->ctl);
    ctl_open_path(ckpt, now);

    return ckpt->ctl.fd;
}

/*
 * Read what is available on the control pipe without blocking, up to
 * CTL_READ_MAX_BYTES and CTL_READ_MAX_LINES (the rest waits for the next
 * call).  At most one reopen after EOF per call: a reopened FIFO with no
 * writer reads EOF again at once, and that is not news.
 */
static void ctl_read(struct remus_ckpt *ckpt, uint64_t now)
{
    char buf[256];
    size_t budget = CTL_READ_MAX_BYTES;
    uint64_t lines = ckpt->ctl_lines;
    ssize_t n;
    int fd = ctl_ensure(ckpt, now);
    int reopened = 0;

    while ( fd >= 0 && budget &&
            ckpt->ctl_lines - lines < CTL_READ_MAX_LINES )
    {
        n = read(fd, buf, budget < sizeof(buf) ? budget : sizeof(buf));
        if ( n > 0 )
        {
            budget -= (size_t)n;
            ctl_set_cond(ckpt, REMUS_CKPT_CTL_OK, now);
            ctl_feed(ckpt, buf, (size_t)n);
            continue;
        }
        if ( n == 0 )
        {
            if ( reopened )
            {
                ctl_set_cond(ckpt, REMUS_CKPT_CTL_NOWRITER, now);
                break;
            }
            fd = ctl_gone(ckpt, now);
            reopened = 1;
            continue;
        }
        if ( errno == EINTR )
            continue;
        if ( errno == EAGAIN || errno == EWOULDBLOCK )
        {
            /* An empty pipe with a writer (without one, read() is EOF). */
            ctl_set_cond(ckpt, REMUS_CKPT_CTL_OK, now);
            break;
        }

        /* A read error on a pipe is not expected: stop using this fd. */
        ctl_gone(ckpt, now);
        break;
    }
}

/*
 * Has the control writer been gone long enough for the fallback interval?
 * Sets ckpt->fallback (cleared by the next valid command) and, while it is
 * not yet reached but the writer is gone, *switch_at: when it will be.
 */
static void ctl_check_fallback(struct remus_ckpt *ckpt, uint64_t now,
                               uint64_t *switch_at)
{
    uint64_t at;

    *switch_at = 0;
    if ( !ckpt->fallback_ms || ckpt->fallback || !ckpt->ctl_gone_since ||
         ckpt->ctl.state == CHAN_UNSET )
        return;

    at = ckpt->ctl_gone_since + ckpt->ctl_timeout_ns;
    if ( now >= at )
        ckpt->fallback = 1;
    else
        *switch_at = at;
}

/* The state of control for the record ("ctl=" on the wire). */
static uint32_t ctl_state(const struct remus_ckpt *ckpt)
{
    if ( ckpt->ctl.state == CHAN_UNSET )
        return REMUS_CKPT_CTL_UNSET;
    if ( ckpt->fallback )
        return REMUS_CKPT_CTL_FALLBACK;

    return ckpt->ctl_cond;
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
 *    max(min_period, min(interval / 4, 4 x min_period)): at least
 *    ~0.25 % of the wait, so that a guest that starts dirtying fast after
 *    an idle spell is seen within 4 x min_period (8 ms for a 20 us
 *    probe), not a quarter of a long interval later: at a 20x jump of the
 *    rate, a longer period let the checkpoint overshoot the budget
 *    (docs/benchmarks.md).
 *  - A probe that fails stops probing for this checkpoint (probe_errors
 *    counts it); the interval paces as without a budget.
 *  - A new budget on the control channel is probed against at once.
 * Without a probe or a budget nothing here is called.
 */
#define PROBE_MIN_PERIOD_NS NSEC_PER_MSEC
#define PROBE_COST_FACTOR   100  /* period >= 100 x cost: <= 1 % of time */
#define PROBE_MAX_DIVISOR   4    /* period <= interval / 4 */
#define PROBE_MAX_FACTOR    4    /* period <= 4 x min_period */

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

static uint64_t clock_now(const struct remus_ckpt *ckpt)
{
    return ckpt->clock_now ? ckpt->clock_now(ckpt->clock_arg) : now_ns();
}

/* Where the count starts (guest resumed) and how late a suspend lands. */
static void budget_begin(const struct remus_ckpt *ckpt, struct budget *bg)
{
    const struct remus_ckpt_record *prev = &ckpt->last;

    memset(bg, 0, sizeof(*bg));
    bg->origin = prev->t_resumed ? prev->t_resumed :
                 prev->t_suspended ? prev->t_suspended : ckpt->prev_suspend;
    bg->t0 = bg->origin;
    if ( prev->t_suspend && prev->t_suspended > prev->t_suspend )
        bg->lat_ns = prev->t_suspended - prev->t_suspend;
}

static uint64_t budget_min_period(const struct remus_ckpt *ckpt)
{
    uint64_t p = ckpt->probe_cost_ns * PROBE_COST_FACTOR;

    return p > PROBE_MIN_PERIOD_NS ? p : PROBE_MIN_PERIOD_NS;
}

/* Call the probe, timing it with the clock.  0, or -1 if it failed. */
static int budget_probe(struct remus_ckpt *ckpt, struct budget *bg,
                        uint64_t *now)
{
    uint64_t start = *now, dirty = 0, cost;
    int r = ckpt->probe(ckpt->probe_arg, &dirty);

    *now = clock_now(ckpt);
    cost = *now > start ? *now - start : 0;
    bg->probes++;
    bg->probe_ns += cost;
    if ( r )
    {
        bg->failed = 1;
        ckpt->probe_errors++;
        return -1;
    }

    ckpt->probe_cost_ns = ckpt->probe_cost_ns
                        ? (7 * ckpt->probe_cost_ns + cost) / 8 : cost;
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
static int budget_decide(const struct remus_ckpt *ckpt, struct budget *bg,
                         unsigned int interval, uint64_t now)
{
    uint64_t min_p = budget_min_period(ckpt);
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
static int budget_poll(struct remus_ckpt *ckpt, struct budget *bg,
                       unsigned int interval, uint64_t *now)
{
    if ( !ckpt->probe || !ckpt->cmd_budget_pages || bg->failed )
        return 0;

    /* A new budget is probed against at once. */
    if ( bg->pages != ckpt->cmd_budget_pages )
    {
        bg->pages = ckpt->cmd_budget_pages;
        bg->next = *now;
    }
    if ( *now < bg->next )
        return 0;
    if ( budget_probe(ckpt, bg, now) )
        return 0;

    return budget_decide(ckpt, bg, interval, *now);
}

/* When the gate must wake: the next probe, if before the deadline. */
static uint64_t budget_wake(const struct remus_ckpt *ckpt,
                            const struct budget *bg, uint64_t deadline)
{
    if ( !ckpt->probe || !ckpt->cmd_budget_pages || bg->failed || !bg->pages )
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

    /*
     * What open() timed on the old clock starts again on the new one (the
     * fallback's wait for a first writer, the paths' last looks), so that
     * no comparison ever mixes the two clocks.
     */
    if ( ckpt->ctl_gone_since )
        ckpt->ctl_gone_since = clock_now(ckpt);
    ckpt->ctl.checked = 0;
    ckpt->stats.checked = 0;
}

/* ------------------------------------------------------------------ */
/* Pacing gate                                                         */
/* ------------------------------------------------------------------ */

/*
 * Sleep until deadline (CLOCK_MONOTONIC ns) or until the control pipe
 * becomes readable, whichever comes first.  Returns with nothing learnt:
 * the caller re-reads control and recomputes the deadline.
 */
static void gate_sleep(struct remus_ckpt *ckpt, uint64_t deadline,
                       uint64_t now)
{
    struct pollfd pfd;
    struct timespec ts;
    int fd = ckpt->ctl.fd;

    /* Dirty-page budget: an injected clock sleeps its own way. */
    if ( ckpt->clock_sleep )
    {
        ckpt->clock_sleep(ckpt->clock_arg, deadline);
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
        ctl_refuse(ckpt, ckpt->ctl.path, "invalid fd", now);
    }
}

/*
 * The interval to pace for now (0: none), and until when the gate may
 * sleep before it must look again: the deadline, or earlier when the
 * fallback will take over, or when an absent or refused control path is
 * due to be looked at again.
 */
static unsigned int gate_plan(struct remus_ckpt *ckpt, uint64_t now,
                              uint64_t *until)
{
    uint64_t switch_at, retry_at;
    unsigned int interval;

    ctl_check_fallback(ckpt, now, &switch_at);
    interval = ckpt->fallback ? ckpt->fallback_ms : ckpt->cmd_interval_ms;
    if ( !interval )
        return 0;

    *until = ckpt->prev_suspend + interval * NSEC_PER_MSEC;
    if ( switch_at && switch_at < *until )
        *until = switch_at;
    if ( ckpt->ctl.state == CHAN_PATH && ckpt->ctl.fd < 0 )
    {
        retry_at = ckpt->ctl.checked + REFUSED_RECHECK_NS;
        if ( retry_at < *until )
            *until = retry_at;
    }

    return interval;
}

void remus_ckpt_gate(struct remus_ckpt *ckpt, int live)
{
    uint64_t now, until, wait_start = 0;
    unsigned int interval = 0;
    /* Dirty-page budget: what ended the wait, the probing state. */
    unsigned int trigger = REMUS_CKPT_TRIGGER_NONE;
    uint64_t deadline, wake, slept_for = 0;
    struct budget bg;

    if ( !ckpt )
        return;

    now = clock_now(ckpt);
    ckpt->cur.t_gate = now;
    ckpt->cur.live = live ? 1 : 0;
    budget_begin(ckpt, &bg);

    ctl_read(ckpt, now);

    /*
     * Only a Remus stream past its live round with a previous checkpoint
     * is paced; COLO decides its checkpoints itself.  The deadline counts
     * from the previous suspend, and is recomputed after every wake: a
     * shorter interval ends the wait early, a longer one extends it, the
     * fallback replaces a dead controller's.  A deadline already passed is
     * not caught up on, however much control input is waiting.  A budget
     * ends the wait earlier still (budget_poll()).
     */
    if ( ckpt->stream == REMUS_CKPT_STREAM_REMUS && !live &&
         ckpt->prev_suspend )
    {
        for ( ;; )
        {
            now = clock_now(ckpt);
            interval = gate_plan(ckpt, now, &until);
            if ( !interval )
                break;
            deadline = ckpt->prev_suspend + interval * NSEC_PER_MSEC;
            if ( now >= deadline )
            {
                trigger = gate_trigger(wait_start, deadline, slept_for, now);
                break;
            }
            if ( !wait_start )
                wait_start = now;
            /* Dirty-page budget: BEGIN */
            if ( budget_poll(ckpt, &bg, interval, &now) )
            {
                trigger = REMUS_CKPT_TRIGGER_BUDGET;
                break;
            }
            wake = budget_wake(ckpt, &bg, until);
            slept_for = deadline;
            if ( wake > now )
                gate_sleep(ckpt, wake, now);
            /* Dirty-page budget: END */
            ctl_read(ckpt, clock_now(ckpt));
        }
    }
    else
        ctl_check_fallback(ckpt, clock_now(ckpt), &until);

    now = clock_now(ckpt);
    ckpt->cur.t_suspend = now;
    ckpt->cur.gate_wait_ns = wait_start ? now - wait_start : 0;
    ckpt->cur.interval_ms = interval;
    ckpt->cur.ctl_state = ctl_state(ckpt);
    ckpt->prev_suspend = now;
    /* Dirty-page budget */
    ckpt->cur.trigger = trigger;
    ckpt->cur.dirty_at_trigger = bg.d1;
    ckpt->cur.probes = bg.probes;
    ckpt->cur.probe_ns = bg.probe_ns;
}

/* ------------------------------------------------------------------ */
/* Stats channel                                                       */
/* ------------------------------------------------------------------ */

/*
 * Open the stats path for writing (chan_open_path(): a FIFO without a
 * reader fails with ENXIO instead of blocking, and only a FIFO of ours is
 * accepted).  A refused path is tried again at most once per
 * REFUSED_RECHECK_NS, an absent one or one without a reader at every
 * record.  now is the time of this record: the identity noted here is as
 * good as a check.
 */
static int stats_open_path(struct remus_ckpt *ckpt, uint64_t now)
{
    const char *why;
    int fd;

    if ( ckpt->stats.refused &&
         !chan_due(&ckpt->stats, now, REFUSED_RECHECK_NS) )
        return -1;
    ckpt->stats.checked = now;

    fd = chan_open_path(&ckpt->stats, O_WRONLY, &why);
    ckpt->stats.refused = why != NULL;
    if ( why )
        chan_warn(&ckpt->stats, "cannot use stats", ckpt->stats.path, why);
    if ( fd >= 0 )
        ckpt->stats_reopened = 1;

    return fd;
}

/*
 * The fd to write the record of time now to, or -1.
 *
 * A stats path may be removed and created again (a consumer restarted with
 * a new FIFO): records must then follow the path.  The path's identity is
 * checked:
 *  - when the fd is not open: it is opened by path, which follows anyway;
 *  - after a write that failed (stats_write()): if the old FIFO lost its
 *    reader the write fails with EPIPE, if it is full with EAGAIN;
 *  - and at the first record PATH_RECHECK_NS (100 ms) or more after the
 *    last check, for the one case writes cannot tell: the old FIFO still
 *    has a reader that keeps reading.  Records keep going to that reader
 *    until then.
 */
static int stats_ensure(struct remus_ckpt *ckpt, uint64_t now)
{
    if ( ckpt->stats.state == CHAN_FD )
        return ckpt->stats.fd;
    if ( ckpt->stats.state != CHAN_PATH )
        return -1;

    if ( ckpt->stats.fd >= 0 && chan_due(&ckpt->stats, now, PATH_RECHECK_NS) &&
         chan_path_changed(&ckpt->stats) )
        chan_close(&ckpt->stats);
    if ( ckpt->stats.fd < 0 )
        return stats_open_path(ckpt, now);

    return ckpt->stats.fd;
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
 * One record to the stats fd: send() on a datagram or seqpacket socket (a
 * message is whole or not sent; MSG_NOSIGNAL: no SIGPIPE), else a pipe
 * write (whole or not written: under PIPE_BUF).  0 or -1 with errno.
 */
static int stats_send(struct remus_ckpt *ckpt, int fd, const char *buf,
                      size_t len)
{
    ssize_t n;

    if ( !ckpt->stats.sock )
        return write_nosigpipe(fd, buf, len);

    do {
        n = send(fd, buf, len, MSG_DONTWAIT | MSG_NOSIGNAL);
    } while ( n < 0 && errno == EINTR );
    if ( n < 0 )
        return -1;
    errno = 0;

    return n == (ssize_t)len ? 0 : -1;
}

/*
 * After a failed write to the stats path: keep the fd (1) only for EAGAIN
 * on a path that still names the same file (the reader is slow).  Anything
 * else (EPIPE: the reader went away; EAGAIN on a replaced path: an old
 * reader stopped reading) closes it (0).
 */
static int stats_keep_after(struct remus_ckpt *ckpt, int err, uint64_t now)
{
    if ( err == EAGAIN || err == EWOULDBLOCK )
    {
        ckpt->stats.checked = now;
        if ( !chan_path_changed(&ckpt->stats) )
            return 1;
    }

    chan_close(&ckpt->stats);
    return 0;
}

/*
 * A write failed with err.  A full pipe (EAGAIN) or a reader that went
 * away (EPIPE) is the consumer's ordinary life and only counts as dropped;
 * anything else means the channel is broken, and is said once on stderr.
 */
static void stats_failed(struct remus_ckpt *ckpt, const char *spec, int err)
{
    if ( err == EAGAIN || err == EWOULDBLOCK || err == EPIPE ||
         err == ECONNREFUSED || err == ENOBUFS )
        return;

    chan_warn(&ckpt->stats, "cannot use stats", spec,
              err ? strerror(err) : "short write");
}

/* The state of the stats channel a record is written in ("stats="). */
static uint32_t stats_state(const struct remus_ckpt *ckpt)
{
    return ckpt->stats_reopened ? REMUS_CKPT_STATS_REOPENED
                                : REMUS_CKPT_STATS_OK;
}

/*
 * Formats rec (a record of the kind the caller writes) into buf, with the
 * stats state it is written in; as remus_ckpt_format().
 */
typedef int stats_format_fn(struct remus_ckpt *ckpt, void *rec, char *buf,
                            size_t len);

/* The checkpoint record: rec is &ckpt->cur. */
static int stats_format(struct remus_ckpt *ckpt, void *rec, char *buf,
                        size_t len)
{
    struct remus_ckpt_record *r = rec;

    r->stats_state = stats_state(ckpt);

    return remus_ckpt_format(r, buf, len);
}

/*
 * Format rec with format and write it, as the record of time now; on any
 * failure it is dropped (-1).  On a path, a write that failed with EPIPE,
 * or with EAGAIN on a replaced path, is followed by one more try on the
 * path opened again: a FIFO re-created by a new consumer then gets this
 * record instead of losing it.
 */
static int stats_write(struct remus_ckpt *ckpt, uint64_t now,
                       stats_format_fn *format, void *rec)
{
    char buf[REMUS_CKPT_RECORD_MAX + 1];
    const char *spec = ckpt->stats.path;
    int fd = stats_ensure(ckpt, now);
    int n, err;

    if ( fd < 0 )
        return -1;

    n = format(ckpt, rec, buf, sizeof(buf));
    if ( n < 0 )
        return -1;
    if ( !stats_send(ckpt, fd, buf, (size_t)n) )
        goto written;

    /* fd:N is the caller's: it is kept whatever happened. */
    err = errno;
    stats_failed(ckpt, spec, err);
    if ( ckpt->stats.state != CHAN_PATH || stats_keep_after(ckpt, err, now) )
        return -1;

    /* Only a lost reader or a replaced path can be cured by reopening. */
    if ( err != EPIPE && err != EAGAIN && err != EWOULDBLOCK )
        return -1;

    fd = stats_open_path(ckpt, now);
    if ( fd < 0 )
        return -1;

    n = format(ckpt, rec, buf, sizeof(buf));
    if ( n >= 0 && !stats_send(ckpt, fd, buf, (size_t)n) )
        goto written;

    stats_failed(ckpt, spec, errno);
    stats_keep_after(ckpt, errno, now);
    return -1;

 written:
    ckpt->stats_reopened = 0;
    chan_healed(&ckpt->stats);
    return 0;
}

/*
 * A stats fd:N was handed over by the caller: a pipe or FIFO open for
 * writing (made non-blocking), or a datagram or seqpacket socket (sent to
 * with MSG_DONTWAIT).  Never a stream socket (a short write would tear a
 * line), a regular file or a device.  Returns NULL or why not.
 */
static const char *stats_check_fd(struct chan *ch)
{
    struct stat st;
    socklen_t len = sizeof(int);
    int type;

    if ( fstat(ch->fd, &st) )
        return strerror(errno);
    if ( S_ISFIFO(st.st_mode) )
        return fd_check(ch->fd, O_RDONLY);
    if ( !S_ISSOCK(st.st_mode) )
        return "not a pipe, FIFO or datagram socket";

    if ( getsockopt(ch->fd, SOL_SOCKET, SO_TYPE, &type, &len) )
        return strerror(errno);
    if ( type != SOCK_DGRAM && type != SOCK_SEQPACKET )
        return "a stream socket (lines could be torn)";
    ch->sock = 1;

    return NULL;
}

/*
 * Set up the stats channel from its spec (NULL or "": unset).  A spec that
 * cannot be used is reported once; the records are then all counted as
 * dropped (they are still kept for _last()).
 */
static void stats_setup(struct remus_ckpt *ckpt, const char *stats_spec)
{
    const char *why = chan_init(&ckpt->stats, stats_spec);

    if ( !why && ckpt->stats.state == CHAN_FD )
        why = stats_check_fd(&ckpt->stats);
    if ( why )
    {
        chan_warn(&ckpt->stats, "cannot use stats", stats_spec, why);
        chan_off(&ckpt->stats);
    }
}

/* ------------------------------------------------------------------ */
/* Public entry points                                                 */
/* ------------------------------------------------------------------ */

/*
 * Parse a number from the environment (NULL or "": unset, 0).  An invalid
 * one is said once on stderr and is unset.
 */
static uint32_t env_ms(const char *name, uint32_t max)
{
    const char *s = getenv(name);
    unsigned long v;

    if ( !s || !*s )
        return 0;
    v = parse_decimal(s, max);
    if ( !v )
        fprintf(stderr, "remus-ckpt: ignoring %s=%s: not a number of ms in "
                "1..%u\n", name, s, (unsigned int)max);

    return (uint32_t)v;
}

/* A configured value out of range is said once on stderr and ignored. */
static uint32_t cfg_ms(const char *name, uint32_t v, uint32_t max)
{
    if ( v <= max )
        return v;
    fprintf(stderr, "remus-ckpt: ignoring %s=%u: not in 1..%u\n", name,
            (unsigned int)v, (unsigned int)max);

    return 0;
}

struct remus_ckpt *remus_ckpt_open_cfg(uint32_t domid, unsigned int stream,
                                       uint32_t page_size,
                                       const struct remus_ckpt_config *cfg)
{
    struct remus_ckpt *ckpt;
    const char *stats_spec = cfg ? cfg->stats_spec : NULL;
    const char *control_spec = cfg ? cfg->control_spec : NULL;
    const char *why;
    uint32_t timeout_ms;
    uint64_t now;

    if ( (!stats_spec || !*stats_spec) && (!control_spec || !*control_spec) )
        return NULL;
    if ( !stream_name(stream) )
        return NULL;
    /*
     * Xen always passes its real page size; a record saying page_size=0
     * would be refused by the consumer, so none is ever written.
     */
    if ( !page_size )
    {
        fprintf(stderr, "remus-ckpt: domain %u: page size 0, not recording "
                "checkpoints\n", (unsigned int)domid);
        return NULL;
    }

    ckpt = calloc(1, sizeof(*ckpt));
    if ( !ckpt )
        return NULL;

    now = now_ns();
    ckpt->domid = domid;
    ckpt->stream = stream;
    ckpt->page_size = page_size;

    stats_setup(ckpt, stats_spec);

    /* Until a writer is seen, the fallback's clock runs from here. */
    ckpt->ctl_cond = REMUS_CKPT_CTL_REOPENING;
    ckpt->ctl_gone_since = now;
    why = chan_init(&ckpt->ctl, control_spec);
    if ( !why && ckpt->ctl.state == CHAN_FD )
        why = ctl_check_fd(ckpt->ctl.fd);
    if ( why )
    {
        chan_off(&ckpt->ctl);
        ctl_refuse(ckpt, control_spec, why, now);
    }
    else if ( ckpt->ctl.state == CHAN_FD )
        ckpt->ctl_cond = REMUS_CKPT_CTL_NOWRITER;

    if ( ckpt->ctl.state != CHAN_UNSET )
    {
        ckpt->fallback_ms = cfg_ms(REMUS_CKPT_ENV_FALLBACK, cfg->fallback_ms,
                                   REMUS_CKPT_INTERVAL_MAX_MS);
        timeout_ms = cfg_ms(REMUS_CKPT_ENV_CONTROL_TIMEOUT,
                            cfg->control_timeout_ms,
                            REMUS_CKPT_CONTROL_TIMEOUT_MAX_MS);
        if ( !timeout_ms )
            timeout_ms = REMUS_CKPT_CONTROL_TIMEOUT_DEFAULT_MS;
        ckpt->ctl_timeout_ns = timeout_ms * NSEC_PER_MSEC;
    }

    /* The control FIFO is opened at the first gate, not here. */
    return ckpt;
}

struct remus_ckpt *remus_ckpt_open_with(uint32_t domid, unsigned int stream,
                                        uint32_t page_size,
                                        const char *stats_spec,
                                        const char *control_spec)
{
    struct remus_ckpt_config cfg;

    memset(&cfg, 0, sizeof(cfg));
    cfg.stats_spec = stats_spec;
    cfg.control_spec = control_spec;

    return remus_ckpt_open_cfg(domid, stream, page_size, &cfg);
}

struct remus_ckpt *remus_ckpt_open(uint32_t domid, unsigned int stream,
                                   uint32_t page_size)
{
    struct remus_ckpt_config cfg;

    memset(&cfg, 0, sizeof(cfg));
    cfg.stats_spec = getenv(REMUS_CKPT_ENV_STATS);
    cfg.control_spec = getenv(REMUS_CKPT_ENV_CONTROL);
    if ( (!cfg.stats_spec || !*cfg.stats_spec) &&
         (!cfg.control_spec || !*cfg.control_spec) )
        return NULL;

    /* Read (and complained about) only when control is configured. */
    if ( cfg.control_spec && *cfg.control_spec )
    {
        cfg.fallback_ms = env_ms(REMUS_CKPT_ENV_FALLBACK,
                                 REMUS_CKPT_INTERVAL_MAX_MS);
        cfg.control_timeout_ms = env_ms(REMUS_CKPT_ENV_CONTROL_TIMEOUT,
                                        REMUS_CKPT_CONTROL_TIMEOUT_MAX_MS);
    }

    return remus_ckpt_open_cfg(domid, stream, page_size, &cfg);
}

void remus_ckpt_close(struct remus_ckpt *ckpt)
{
    if ( !ckpt )
        return;

    chan_close(&ckpt->stats);
    chan_close(&ckpt->ctl);
    free(ckpt->stats.path);
    free(ckpt->ctl.path);
    free(ckpt);
}

void remus_ckpt_mark(struct remus_ckpt *ckpt, unsigned int mark)
{
    uint64_t *t;

    if ( !ckpt )
        return;

    switch ( mark )
    {
    case REMUS_CKPT_MARK_SUSPENDED:
        t = &ckpt->cur.t_suspended;
        break;
    case REMUS_CKPT_MARK_SENT:
        t = &ckpt->cur.t_sent;
        break;
    case REMUS_CKPT_MARK_RESUMED:
        t = &ckpt->cur.t_resumed;
        break;
    default:
        return;
    }

    *t = clock_now(ckpt);
}

void remus_ckpt_dirty(struct remus_ckpt *ckpt, uint64_t dirty_pages,
                      uint64_t deferred_pages)
{
    if ( !ckpt )
        return;

    ckpt->cur.dirty_pages = dirty_pages;
    ckpt->cur.deferred_pages = deferred_pages;
}

void remus_ckpt_clean_failed(struct remus_ckpt *ckpt)
{
    if ( !ckpt )
        return;

    ckpt->cur.dirty_pages = 0;
    ckpt->cur.clean_error = 1;
}

void remus_ckpt_wrote(struct remus_ckpt *ckpt, uint64_t bytes, uint64_t pages)
{
    if ( !ckpt )
        return;

    ckpt->cur.bytes_sent += bytes;
    ckpt->cur.pages_sent += pages;
}

void remus_ckpt_wrote_raw(struct remus_ckpt *ckpt, uint64_t bytes)
{
    if ( !ckpt )
        return;

    ckpt->cur.bytes_raw += bytes;
}

void remus_ckpt_emit(struct remus_ckpt *ckpt)
{
    if ( !ckpt )
        return;

    ckpt->cur.t_done = clock_now(ckpt);
    ckpt->cur.seq = ckpt->seq;
    ckpt->cur.domid = ckpt->domid;
    ckpt->cur.stream = ckpt->stream;
    ckpt->cur.page_size = ckpt->page_size;
    ckpt->cur.cmd_interval_ms = ckpt->cmd_interval_ms;
    ckpt->cur.dropped = ckpt->dropped;
    ckpt->cur.ctl_rejected = ckpt->ctl_rejected;
    ckpt->cur.budget_pages = ckpt->cmd_budget_pages;
    ckpt->cur.probe_errors = ckpt->probe_errors;

    if ( ckpt->stats.state != CHAN_UNSET &&
         stats_write(ckpt, ckpt->cur.t_done, stats_format, &ckpt->cur) )
        ckpt->dropped++;

    ckpt->last = ckpt->cur;

    /* Next checkpoint; prev_suspend (kept by the gate) survives this. */
    memset(&ckpt->cur, 0, sizeof(ckpt->cur));
    ckpt->seq++;
}

void remus_ckpt_end(struct remus_ckpt *ckpt, unsigned int reason)
{
    if ( !ckpt )
        return;

    ckpt->cur.end = end_name(reason) ? reason : REMUS_CKPT_END_ERROR;
    remus_ckpt_emit(ckpt);
}

int remus_ckpt_last(const struct remus_ckpt *ckpt,
                    struct remus_ckpt_record *out)
{
    if ( !ckpt || !out || !ckpt->seq )
        return -1;

    *out = ckpt->last;
    return 0;
}

/* ------------------------------------------------------------------ */
/* Disk epochs (blktap2 tap-remus)                                     */
/* ------------------------------------------------------------------ */

/*
 * The disk records go through a struct remus_ckpt of which only the stats
 * channel (and its drop count) is used: the same opening, checking,
 * reopening and SIGPIPE-free writing as the checkpoint records.
 */
struct remus_ckpt_disk {
    struct remus_ckpt *out;
    uint64_t seq;
    struct remus_ckpt_disk_record cur;
    struct remus_ckpt_disk_record last;  /* valid once seq > 0 */
};

static const char *disk_commit_name(uint32_t commit)
{
    switch ( commit )
    {
    case REMUS_CKPT_DISK_COMMIT_SENT:
        return "sent";
    case REMUS_CKPT_DISK_COMMIT_FAILED:
        return "failed";
    case REMUS_CKPT_DISK_COMMIT_NONE:
        return "none";
    default:
        return NULL;
    }
}

int remus_ckpt_disk_format(const struct remus_ckpt_disk_record *rec,
                           char *buf, size_t len)
{
    struct line l;
    const char *commit;

    if ( !rec || !buf || !len )
        return -1;

    commit = disk_commit_name(rec->commit);
    if ( !commit )
        return -1;

    l.len = 0;
    line_append(&l, "disk", 4);
    LINE_U64(&l, "v", REMUS_CKPT_DISK_RECORD_VERSION);

    /* Key order is part of the protocol (docs/protocol.md). */
    LINE_U64(&l, "seq", rec->seq);
    LINE_U64(&l, "sector_size", rec->sector_size);
    LINE_U64(&l, "writes", rec->writes);
    LINE_U64(&l, "sectors", rec->sectors);
    LINE_U64(&l, "bytes", rec->bytes);
    LINE_U64(&l, "wire_bytes", rec->wire_bytes);
    LINE_U64(&l, "t_commit", rec->t_commit);
    line_append(&l, " commit=", sizeof(" commit=") - 1);
    line_append(&l, commit, strlen(commit));
    LINE_U64(&l, "dropped", rec->dropped);
    if ( line_state(&l, " stats=", rec->stats_state, stats_state_names,
                    NR_NAMES(stats_state_names)) )
        return -1;

    if ( l.len + 1 > REMUS_CKPT_RECORD_MAX || l.len + 2 > len )
        return -1;

    memcpy(buf, l.buf, l.len);
    buf[l.len] = '\n';
    buf[l.len + 1] = '\0';

    return (int)(l.len + 1);
}

/* The disk record: rec is &disk->cur. */
static int disk_format(struct remus_ckpt *ckpt, void *rec, char *buf,
                       size_t len)
{
    struct remus_ckpt_disk_record *r = rec;

    r->stats_state = stats_state(ckpt);

    return remus_ckpt_disk_format(r, buf, len);
}

struct remus_ckpt_disk *remus_ckpt_disk_open(const char *ctl_path)
{
    struct remus_ckpt_disk *disk;
    size_t n;
    char *path;

    if ( !ctl_path || !*ctl_path )
        return NULL;

    n = strlen(ctl_path);
    path = malloc(n + sizeof(REMUS_CKPT_DISK_SUFFIX));
    disk = calloc(1, sizeof(*disk));
    if ( disk )
        disk->out = calloc(1, sizeof(*disk->out));
    if ( !path || !disk || !disk->out )
        goto fail;
    memcpy(path, ctl_path, n);
    memcpy(path + n, REMUS_CKPT_DISK_SUFFIX, sizeof(REMUS_CKPT_DISK_SUFFIX));

    /*
     * Always a path (tapdisk's control FIFOs are absolute paths under
     * /var/run/tap).  A ctl_path starting with "fd:" would give an invalid
     * fd spec: reported once, every record counted as dropped.
     */
    stats_setup(disk->out, path);
    free(path);

    return disk;

 fail:
    free(path);
    if ( disk )
        free(disk->out);
    free(disk);
    return NULL;
}

void remus_ckpt_disk_close(struct remus_ckpt_disk *disk)
{
    if ( !disk )
        return;

    remus_ckpt_close(disk->out);
    free(disk);
}

void remus_ckpt_disk_wrote(struct remus_ckpt_disk *disk, uint64_t secs,
                           uint64_t sector_size)
{
    struct remus_ckpt_disk_record *r;
    uint64_t bytes;

    if ( !disk )
        return;

    r = &disk->cur;
    /* tapdisk's requests are at most a few pages; saturate all the same. */
    bytes = sector_size && secs > UINT64_MAX / sector_size
            ? UINT64_MAX : secs * sector_size;
    r->writes++;
    r->sectors = r->sectors + secs < secs ? UINT64_MAX : r->sectors + secs;
    r->bytes = r->bytes + bytes < bytes ? UINT64_MAX : r->bytes + bytes;
    bytes = bytes + REMUS_CKPT_DISK_WREQ_HEADER < bytes
            ? UINT64_MAX : bytes + REMUS_CKPT_DISK_WREQ_HEADER;
    r->wire_bytes = r->wire_bytes + bytes < bytes
                    ? UINT64_MAX : r->wire_bytes + bytes;
    r->sector_size = sector_size;
}

void remus_ckpt_disk_commit(struct remus_ckpt_disk *disk, int connected,
                            int flush_rc)
{
    struct remus_ckpt_disk_record *r;
    struct remus_ckpt *out;

    if ( !disk )
        return;

    r = &disk->cur;
    out = disk->out;
    if ( !connected )
        r->commit = REMUS_CKPT_DISK_COMMIT_NONE;
    else if ( flush_rc )
        r->commit = REMUS_CKPT_DISK_COMMIT_FAILED;
    else
    {
        r->commit = REMUS_CKPT_DISK_COMMIT_SENT;
        if ( r->wire_bytes <= UINT64_MAX - REMUS_CKPT_DISK_CREQ )
            r->wire_bytes += REMUS_CKPT_DISK_CREQ;
    }
    r->seq = disk->seq;
    r->t_commit = clock_now(out);
    r->dropped = out->dropped;

    if ( out->stats.state != CHAN_UNSET &&
         stats_write(out, r->t_commit, disk_format, r) )
        out->dropped++;

    disk->last = *r;
    memset(r, 0, sizeof(*r));
    disk->seq++;
}

int remus_ckpt_disk_last(const struct remus_ckpt_disk *disk,
                         struct remus_ckpt_disk_record *out)
{
    if ( !disk || !out || !disk->seq )
        return -1;

    *out = disk->last;
    return 0;
}
