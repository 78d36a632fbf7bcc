/* SPDX-License-Identifier: LGPL-2.1-only */
/*
 * remus_ckpt.h - per-checkpoint records and interval pacing for Remus/COLO.
 *
 * This header is the whole contract between Xen's save loop (the hooks in
 * patches/) and remus_ckpt.c, which is compiled into libxenguest and runs
 * inside libxl-save-helper.  The record format itself is specified in
 * docs/protocol.md.
 *
 * Life cycle, per saved domain (one struct remus_ckpt per save context):
 *
 *   ckpt = remus_ckpt_open(domid, stream, page_size);  NULL: unconfigured
 *   remus_ckpt_set_probe(ckpt, probe, arg)  how to read the running dirty count
 *   per checkpoint:
 *     remus_ckpt_gate(ckpt, live)           just before suspending the guest
 *     remus_ckpt_mark(ckpt, SUSPENDED)      guest is paused
 *     remus_ckpt_dirty(ckpt, dirty, defer)  from the log-dirty CLEAN
 *       or remus_ckpt_clean_failed(ckpt)    when that CLEAN failed (legacy)
 *     remus_ckpt_wrote(ckpt, bytes, pages)  from every write to the stream
 *     remus_ckpt_mark(ckpt, SENT)           checkpoint written to the stream
 *     remus_ckpt_mark(ckpt, RESUMED)        postcopy returned: guest runs
 *     remus_ckpt_emit(ckpt)                 checkpoint committed: one record
 *   or, when the callback after RESUMED ends the save:
 *     remus_ckpt_end(ckpt, reason)          its record, with end=<reason>
 *   remus_ckpt_close(ckpt)
 *
 * Every function accepts ckpt == NULL and then does nothing, so that an
 * unconfigured save (neither REMUS_CKPT_STATS nor REMUS_CKPT_CONTROL set)
 * costs one pointer test per hook and changes nothing.
 *
 * No function blocks, except remus_ckpt_gate() while it paces on purpose,
 * and none fails: problems are counted and reported in the records.
 *
 * Threads: a ckpt has no lock, so calls on one ckpt must not overlap: use
 * it from one thread at a time.  It is not tied to a thread: it keeps no
 * thread-local state and leaves the signal mask as it found it (SIGPIPE
 * is blocked only inside a write, in the calling thread), so it may move
 * to another thread between calls, with the caller ordering the hand-over
 * (a mutex, a channel, a join).  The probe, clock and sleep callbacks run
 * in the thread that called into the library, during that call.  The
 * library has no mutable global state: different ckpts may be used from
 * different threads at the same time, and remus_ckpt_format() and the
 * remus_ckpt_parse_control*() functions are pure.  libxl-save-helper
 * uses one ckpt from its one thread.
 */
#ifndef REMUS_CKPT_H
#define REMUS_CKPT_H

#include <stddef.h>
#include <stdint.h>

/* Version of the record line ("ckpt v=1 ..."). */
#define REMUS_CKPT_RECORD_VERSION 1
/*
 * Upper bound of one record line, newline included: below Linux's PIPE_BUF
 * (4096), so one write() to a pipe is atomic.  The longest possible record
 * is 818 bytes (docs/protocol.md): every record fits.
 */
#define REMUS_CKPT_RECORD_MAX 1024
/* Largest interval accepted on the control pipe. */
#define REMUS_CKPT_INTERVAL_MAX_MS 60000u
/* Largest dirty-page budget accepted on the control pipe (2^40 pages). */
#define REMUS_CKPT_BUDGET_MAX_PAGES (1ULL << 40)

/* Environment variables read by remus_ckpt_open(): a path, or "fd:N". */
#define REMUS_CKPT_ENV_STATS "REMUS_CKPT_STATS"
#define REMUS_CKPT_ENV_CONTROL "REMUS_CKPT_CONTROL"
/*
 * Interval (1..REMUS_CKPT_INTERVAL_MAX_MS) the gate falls back to once the
 * control writer has been gone for the control timeout; unset: none.
 */
#define REMUS_CKPT_ENV_FALLBACK "REMUS_CKPT_FALLBACK_MS"
/* That timeout, 1..REMUS_CKPT_CONTROL_TIMEOUT_MAX_MS; unset: the default. */
#define REMUS_CKPT_ENV_CONTROL_TIMEOUT "REMUS_CKPT_CONTROL_TIMEOUT_MS"
#define REMUS_CKPT_CONTROL_TIMEOUT_DEFAULT_MS 10000u
#define REMUS_CKPT_CONTROL_TIMEOUT_MAX_MS 600000u

enum remus_ckpt_stream {
    REMUS_CKPT_STREAM_REMUS = 1,  /* paced by the gate */
    REMUS_CKPT_STREAM_COLO = 2,   /* records only, never paced */
};

enum remus_ckpt_mark {
    REMUS_CKPT_MARK_SUSPENDED = 1, /* suspend_domain() returned */
    REMUS_CKPT_MARK_SENT = 2,      /* checkpoint record written */
    REMUS_CKPT_MARK_RESUMED = 3,   /* postcopy callback returned */
};

/* The stats channel when a record was written ("stats=" on the wire). */
enum remus_ckpt_stats_state {
    REMUS_CKPT_STATS_OK = 1,       /* steady */
    REMUS_CKPT_STATS_REOPENED = 2, /* path (re)opened since the last record */
};

/* Control at the gate ("ctl=" on the wire). */
enum remus_ckpt_ctl_state {
    REMUS_CKPT_CTL_UNSET = 1,      /* not configured */
    REMUS_CKPT_CTL_OK = 2,         /* open, with a writer */
    REMUS_CKPT_CTL_NOWRITER = 3,   /* open, no writer (EOF) */
    REMUS_CKPT_CTL_REFUSED = 4,    /* refused; a path is rechecked */
    REMUS_CKPT_CTL_REOPENING = 5,  /* path absent (yet or again) */
    REMUS_CKPT_CTL_FALLBACK = 6,   /* writer gone too long: fallback interval */
};

/* What ended the gate's wait (record key trigger=). */
enum remus_ckpt_trigger {
    REMUS_CKPT_TRIGGER_NONE = 0,     /* no wait at all */
    REMUS_CKPT_TRIGGER_INTERVAL = 1, /* the interval's deadline */
    REMUS_CKPT_TRIGGER_BUDGET = 2,   /* the dirty-page budget */
    REMUS_CKPT_TRIGGER_CONTROL = 3,  /* a control line moved the deadline
                                        into the past */
};

/*
 * How the save ended at this record's checkpoint (record key end=): the
 * checkpoint was sent and the guest resumed, then the callback after
 * postcopy returned <= 0, so the save stops here.  0: the save goes on.
 */
enum remus_ckpt_end {
    REMUS_CKPT_END_NONE = 0,
    REMUS_CKPT_END_FAILOVER = 1, /* COLO: wait_checkpoint() failed (the
                                    secondary is gone: failover) */
    REMUS_CKPT_END_ABORT = 2,    /* Remus: checkpoint() returned 0 (libxl
                                    ended the save, e.g. an abort while it
                                    waited out its interval) */
    REMUS_CKPT_END_ERROR = 3,    /* the callback failed (returned < 0) */
};

/* Keys of the control lines (remus_ckpt_parse_control_kv()). */
enum remus_ckpt_ctl_key {
    REMUS_CKPT_CTL_INTERVAL_MS = 1,  /* interval_ms=<1..60000> */
    REMUS_CKPT_CTL_BUDGET_PAGES = 2, /* budget_pages=<0..2^40>, 0: off */
};

/*
 * One checkpoint, as carried by one record line.  Timestamps are
 * CLOCK_MONOTONIC in nanoseconds; 0 means "not reached".
 */
struct remus_ckpt_record {
    uint64_t seq;             /* 0 for the first checkpoint of the save */
    uint32_t domid;
    uint32_t stream;          /* enum remus_ckpt_stream */
    uint32_t live;            /* 1: the initial live round */
    uint32_t page_size;       /* bytes */
    uint64_t dirty_pages;     /* log-dirty CLEAN dirty_count */
    uint64_t deferred_pages;  /* pages deferred from the live rounds */
    uint64_t pages_sent;      /* pages written to the stream */
    uint64_t bytes_sent;      /* bytes written to the stream, with headers */
    uint64_t bytes_raw;       /* before compression; 0: no compression */
    uint64_t t_gate;          /* gate entered */
    uint64_t t_suspend;       /* gate left, suspend requested */
    uint64_t t_suspended;
    uint64_t t_sent;
    uint64_t t_resumed;
    uint64_t t_done;          /* checkpoint committed, record emitted */
    uint32_t interval_ms;     /* the interval the gate paced for; 0: none */
    uint32_t cmd_interval_ms; /* latest valid commanded interval; 0: none */
    uint64_t gate_wait_ns;    /* time spent waiting in the gate */
    uint64_t dropped;         /* records lost before this one */
    uint64_t ctl_rejected;    /* control lines refused so far */
    uint32_t stats_state;     /* enum remus_ckpt_stats_state; 0: not written */
    uint32_t ctl_state;       /* enum remus_ckpt_ctl_state; 0: no gate */
    /* Dirty-page budget (see remus_ckpt_set_probe()). */
    uint32_t trigger;          /* enum remus_ckpt_trigger */
    uint64_t dirty_at_trigger; /* last probed dirty count; 0: no probe */
    uint64_t probes;           /* probe calls in this gate */
    uint64_t probe_ns;         /* time spent in them */
    uint64_t budget_pages;     /* latest valid commanded budget; 0: off */
    uint64_t probe_errors;     /* failed probe calls so far */
    uint32_t end;              /* enum remus_ckpt_end; 0: the save goes on */
    uint32_t clean_error;      /* 1: the log-dirty CLEAN failed, dirty_pages
                                  is 0 and no count (remus_ckpt_clean_failed) */
};

/* What remus_ckpt_open() reads from the environment, given explicitly. */
struct remus_ckpt_config {
    const char *stats_spec;      /* path or "fd:N"; NULL or "": unset */
    const char *control_spec;    /* path or "fd:N"; NULL or "": unset */
    uint32_t fallback_ms;        /* 0: no fallback */
    uint32_t control_timeout_ms; /* 0: REMUS_CKPT_CONTROL_TIMEOUT_DEFAULT_MS */
};

struct remus_ckpt;

/*
 * Pages dirtied since the last log-dirty CLEAN; 0 on success, -1 on error.
 * Supplied by the save code (a log-dirty PEEK with no bitmap), so that
 * remus_ckpt can see the running checkpoint's dirty count without a
 * dependency on libxenctrl.  Must not block for long: one hypercall.
 */
typedef int remus_ckpt_probe_fn(void *arg, uint64_t *dirty_pages);

#ifdef __MINIOS__
/*
 * Mini-OS (stubdom, Xen 4.1-4.5) links tools/libxc's save code too, but
 * has none of what remus_ckpt.c needs (ppoll, clock_nanosleep,
 * pthread_sigmask, O_CLOEXEC): the Makefile patch leaves remus_ckpt.c out
 * of that build, and the hooks in the save code compile to these no-ops,
 * exactly as with remus_ckpt unconfigured.
 */
static inline struct remus_ckpt *remus_ckpt_open(uint32_t domid,
                                                 unsigned int stream,
                                                 uint32_t page_size)
{
    (void)domid; (void)stream; (void)page_size;
    return NULL;
}
static inline void remus_ckpt_close(struct remus_ckpt *ckpt) { (void)ckpt; }
static inline void remus_ckpt_gate(struct remus_ckpt *ckpt, int live)
{
    (void)ckpt; (void)live;
}
static inline void remus_ckpt_mark(struct remus_ckpt *ckpt, unsigned int mark)
{
    (void)ckpt; (void)mark;
}
static inline void remus_ckpt_dirty(struct remus_ckpt *ckpt,
                                    uint64_t dirty_pages,
                                    uint64_t deferred_pages)
{
    (void)ckpt; (void)dirty_pages; (void)deferred_pages;
}
static inline void remus_ckpt_clean_failed(struct remus_ckpt *ckpt)
{
    (void)ckpt;
}
static inline void remus_ckpt_wrote(struct remus_ckpt *ckpt, uint64_t bytes,
                                    uint64_t pages)
{
    (void)ckpt; (void)bytes; (void)pages;
}
static inline void remus_ckpt_wrote_raw(struct remus_ckpt *ckpt,
                                        uint64_t bytes)
{
    (void)ckpt; (void)bytes;
}
static inline void remus_ckpt_emit(struct remus_ckpt *ckpt) { (void)ckpt; }
static inline void remus_ckpt_end(struct remus_ckpt *ckpt, unsigned int reason)
{
    (void)ckpt; (void)reason;
}
static inline void remus_ckpt_set_probe(struct remus_ckpt *ckpt,
                                        remus_ckpt_probe_fn *probe, void *arg)
{
    (void)ckpt; (void)probe; (void)arg;
}
#else /* !__MINIOS__ */

/*
 * Configure from REMUS_CKPT_STATS / REMUS_CKPT_CONTROL (and, with control,
 * REMUS_CKPT_FALLBACK_MS / REMUS_CKPT_CONTROL_TIMEOUT_MS).  Returns NULL
 * when neither channel is set, for page_size 0 (one stderr line) or on
 * allocation failure: every other call is then a no-op.  stream is an
 * enum remus_ckpt_stream.
 */
struct remus_ckpt *remus_ckpt_open(uint32_t domid, unsigned int stream,
                                   uint32_t page_size);

/*
 * As remus_ckpt_open(), with the two specs given (NULL or "" for unset).
 * Used by tests and by the simulator, which must not touch the environment.
 */
struct remus_ckpt *remus_ckpt_open_with(uint32_t domid, unsigned int stream,
                                        uint32_t page_size,
                                        const char *stats_spec,
                                        const char *control_spec);

/*
 * As remus_ckpt_open(), with everything given in cfg (which is not kept).
 * A fallback or timeout out of range gets one stderr line and is ignored.
 * page_size 0 (never from Xen) gets NULL, as from remus_ckpt_open().
 */
struct remus_ckpt *remus_ckpt_open_cfg(uint32_t domid, unsigned int stream,
                                       uint32_t page_size,
                                       const struct remus_ckpt_config *cfg);

void remus_ckpt_close(struct remus_ckpt *ckpt);

/* The clock (CLOCK_MONOTONIC ns) and the gate's sleep, for tests. */
typedef uint64_t remus_ckpt_now_fn(void *arg);
typedef void remus_ckpt_sleep_fn(void *arg, uint64_t deadline_ns);

/*
 * Replace the clock of every timestamp and the gate's sleep: sleep_until
 * must return at deadline_ns or earlier (it may advance a fake clock).
 * The control channel is then read after each sleep but not waited on.
 * For tests and the simulator's virtual time; now or sleep_until NULL:
 * the real clock, ppoll() and clock_nanosleep().  NULL ckpt: no-op.
 */
void remus_ckpt_set_clock(struct remus_ckpt *ckpt, remus_ckpt_now_fn *now,
                          remus_ckpt_sleep_fn *sleep_until, void *arg);

/*
 * Pace the next checkpoint: read the control pipe, then, for a Remus
 * stream that is not live and has a previous checkpoint, sleep until
 * t_suspend(previous) + interval_ms, waking at once on new control input
 * and when the fallback interval takes over.  With a probe and a commanded
 * budget, the wait also ends as soon as the dirty count would reach the
 * budget (docs/protocol.md).  Records t_gate, t_suspend, the state of
 * control and how the wait ended.
 */
void remus_ckpt_gate(struct remus_ckpt *ckpt, int live);

void remus_ckpt_mark(struct remus_ckpt *ckpt, unsigned int mark);

void remus_ckpt_dirty(struct remus_ckpt *ckpt, uint64_t dirty_pages,
                      uint64_t deferred_pages);

/*
 * The log-dirty CLEAN of this checkpoint failed and the save goes on
 * (legacy xc_domain_save(), Xen 4.1-4.5, logs "Error flushing shadow PT"):
 * there is no dirty count.  The record says dirty_pages=0 clean_error=1
 * instead of the stale stats of the failed call.  Call it instead of
 * remus_ckpt_dirty().  NULL ckpt: no-op.
 */
void remus_ckpt_clean_failed(struct remus_ckpt *ckpt);

/* Count bytes (and pages) written to the migration stream. */
void remus_ckpt_wrote(struct remus_ckpt *ckpt, uint64_t bytes, uint64_t pages);

/* Count bytes before compression (legacy save with compression only). */
void remus_ckpt_wrote_raw(struct remus_ckpt *ckpt, uint64_t bytes);

/*
 * End of checkpoint: record t_done, write one record without blocking
 * (dropped and counted when it cannot be written), start the next one.
 */
void remus_ckpt_emit(struct remus_ckpt *ckpt);

/*
 * The save ends at this checkpoint after it was sent and the guest
 * resumed: the callback that follows postcopy returned <= 0 (COLO's
 * wait_checkpoint(), Remus' checkpoint()).  Emits the checkpoint's record
 * as remus_ckpt_emit() does, with end=<reason> (enum remus_ckpt_end), so
 * that the last checkpoint the guest ran on is not lost.  An unknown
 * reason is recorded as REMUS_CKPT_END_ERROR.  NULL ckpt: no-op.
 */
void remus_ckpt_end(struct remus_ckpt *ckpt, unsigned int reason);

/*
 * Format rec as one record line into buf (NUL-terminated).  Returns the
 * line length including its newline, or -1 if it does not fit in len or
 * in REMUS_CKPT_RECORD_MAX.  Pure function.
 */
int remus_ckpt_format(const struct remus_ckpt_record *rec, char *buf,
                      size_t len);

/*
 * Parse one control line (without its newline).  Returns the interval in
 * ms (1..REMUS_CKPT_INTERVAL_MAX_MS), or 0 if the line is not valid.
 * Pure function.
 */
unsigned int remus_ckpt_parse_control(const char *line, size_t len);

/*
 * Parse one control line of any key (without its newline): 0 with *key
 * (enum remus_ckpt_ctl_key) and *value set, or -1 if the line is not
 * valid.  Values are canonical decimal within their key's bounds.  Pure.
 */
int remus_ckpt_parse_control_kv(const char *line, size_t len,
                                unsigned int *key, uint64_t *value);

/*
 * Install the probe, called by the Xen hook right after remus_ckpt_open(),
 * so that the gate can measure the checkpoint while it grows.  Without a
 * probe, or without a commanded budget, the gate never calls it.  arg is
 * passed to every call and must stay valid until remus_ckpt_close().
 * probe NULL: no probe.  ckpt NULL: no-op.
 */
void remus_ckpt_set_probe(struct remus_ckpt *ckpt, remus_ckpt_probe_fn *probe,
                          void *arg);

/* Copy of the last completed record, for tests; 0 on success, -1 if none. */
int remus_ckpt_last(const struct remus_ckpt *ckpt,
                    struct remus_ckpt_record *out);

/*
 * Disk epochs: blktap2's tap-remus driver (tools/blktap2/drivers/
 * block-remus.c, Xen 4.0-4.12), the disk replication of the Python remus
 * tool.  On the primary, tapdisk forwards every guest write to the backup
 * ("wreq") and, when remus writes "flush" to the driver's control FIFO
 * /var/run/tap/remus_<host>_<port> while the guest is suspended, closes
 * the epoch with a commit request ("creq").  One record line ("disk v=1
 * ...", docs/protocol.md) per such flush says what the epoch forwarded.
 *
 *   disk = remus_ckpt_disk_open(ctl_path);   after the control FIFO exists
 *   remus_ckpt_disk_wrote(disk, secs, sector_size)  a write fully forwarded
 *   remus_ckpt_disk_commit(disk, connected, flush_rc)  at each "flush"
 *   remus_ckpt_disk_close(disk)
 *
 * The records go to "<ctl_path>.ckpt" (REMUS_CKPT_DISK_SUFFIX), a FIFO the
 * consumer creates beside the control FIFO; tapdisk is started by the
 * toolstack, not by remus, so no environment reaches it.  That path is
 * treated as the stats channel is (remus_ckpt_open()): opened without
 * blocking or following a final symlink, used only if it is a FIFO of our
 * euid with mode 0600 or narrower, written without SIGPIPE, records that
 * cannot be written are dropped and counted.  Absent, it costs one failed
 * open() per checkpoint and changes nothing.  Every function accepts
 * disk == NULL and then does nothing; none blocks or fails.
 */
#define REMUS_CKPT_DISK_RECORD_VERSION 1
#define REMUS_CKPT_DISK_SUFFIX ".ckpt"
/* Replication protocol overheads (block-remus.c's wire format). */
#define REMUS_CKPT_DISK_WREQ_HEADER 16 /* "wreq", u32 sectors, u64 sector */
#define REMUS_CKPT_DISK_CREQ 4         /* "creq" */

/* How the epoch was closed at the flush (record key commit=). */
enum remus_ckpt_disk_commit {
    REMUS_CKPT_DISK_COMMIT_SENT = 1,    /* creq sent to the backup */
    REMUS_CKPT_DISK_COMMIT_FAILED = 2,  /* sending it failed (backup gone) */
    REMUS_CKPT_DISK_COMMIT_NONE = 3,    /* no connection: nothing to commit */
};

/* One disk epoch, as carried by one "disk" record line. */
struct remus_ckpt_disk_record {
    uint64_t seq;          /* 0 for the first flush since tapdisk opened */
    uint64_t sector_size;  /* bytes, of the last write; 0: no write */
    uint64_t writes;       /* write requests forwarded in the epoch */
    uint64_t sectors;      /* their sectors */
    uint64_t bytes;        /* their payload: sectors x sector_size */
    uint64_t wire_bytes;   /* bytes + headers (+ the creq when sent) */
    uint64_t t_commit;     /* CLOCK_MONOTONIC ns of the flush */
    uint32_t commit;       /* enum remus_ckpt_disk_commit */
    uint64_t dropped;      /* disk records lost before this one */
    uint32_t stats_state;  /* enum remus_ckpt_stats_state; 0: not written */
};

struct remus_ckpt_disk;

/*
 * Records for the tap-remus driver whose control FIFO is ctl_path, written
 * to ctl_path REMUS_CKPT_DISK_SUFFIX.  NULL for a NULL or empty ctl_path
 * or on allocation failure (every later call is then a no-op).
 */
struct remus_ckpt_disk *remus_ckpt_disk_open(const char *ctl_path);

void remus_ckpt_disk_close(struct remus_ckpt_disk *disk);

/* A write request of secs sectors was forwarded to the backup in full. */
void remus_ckpt_disk_wrote(struct remus_ckpt_disk *disk, uint64_t secs,
                           uint64_t sector_size);

/*
 * remus asked for a flush: close the epoch and write its record without
 * blocking.  connected: the replication stream was up before the flush;
 * flush_rc: what the driver's flush (the creq) returned, 0 on success.
 */
void remus_ckpt_disk_commit(struct remus_ckpt_disk *disk, int connected,
                            int flush_rc);

/* As remus_ckpt_format(), for a disk record.  Pure function. */
int remus_ckpt_disk_format(const struct remus_ckpt_disk_record *rec,
                           char *buf, size_t len);

/* Copy of the last closed epoch, for tests; 0 on success, -1 if none. */
int remus_ckpt_disk_last(const struct remus_ckpt_disk *disk,
                         struct remus_ckpt_disk_record *out);

#endif /* !__MINIOS__ */

#endif /* REMUS_CKPT_H */
