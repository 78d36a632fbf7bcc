/* SPDX-License-Identifier: LGPL-2.1-only */
/*
 * alloc_driver.c - runs the save side's per-checkpoint hooks K times into a
 * FIFO, for counting heap allocations under valgrind (benches/emitter.rs
 * builds it with csrc/remus_ckpt.c and compares K with 2K checkpoints:
 * whatever open/close allocate cancels out, the difference is per record).
 *
 * usage: alloc_driver K FIFO_PATH
 *
 * The FIFO is created here, held open for reading non-blocking and drained
 * after every record, so every record is really written (none dropped).
 * Prints "checkpoints=K dropped=D bytes=B"; exits 1 on a setup error.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "remus_ckpt.h"

static uint64_t drain(int fd)
{
    char buf[4096];
    uint64_t total = 0;
    ssize_t n;

    while ( (n = read(fd, buf, sizeof(buf))) > 0 )
        total += (uint64_t)n;

    return total;
}

int main(int argc, char **argv)
{
    struct remus_ckpt *ckpt;
    struct remus_ckpt_record last;
    uint64_t bytes = 0;
    long k, i;
    int rfd;

    if ( argc != 3 || (k = strtol(argv[1], NULL, 10)) <= 0 )
    {
        fprintf(stderr, "usage: %s K FIFO_PATH\n", argv[0]);
        return 1;
    }
    if ( mkfifo(argv[2], 0600) && errno != EEXIST )
    {
        perror("mkfifo");
        return 1;
    }
    /* A reader must exist before the library opens the path (ENXIO). */
    rfd = open(argv[2], O_RDONLY | O_NONBLOCK);
    if ( rfd < 0 )
    {
        perror("open reader");
        return 1;
    }

    /* Stats only: the gate reads no control and never sleeps. */
    ckpt = remus_ckpt_open_with(1, REMUS_CKPT_STREAM_REMUS, 4096, argv[2], NULL);
    if ( !ckpt )
    {
        fprintf(stderr, "remus_ckpt_open_with returned NULL\n");
        return 1;
    }

    for ( i = 0; i < k; i++ )
    {
        remus_ckpt_gate(ckpt, i == 0);
        remus_ckpt_mark(ckpt, REMUS_CKPT_MARK_SUSPENDED);
        remus_ckpt_dirty(ckpt, 1830 + (uint64_t)i, 0);
        remus_ckpt_wrote(ckpt, 7541112 + (uint64_t)i, 1830 + (uint64_t)i);
        remus_ckpt_mark(ckpt, REMUS_CKPT_MARK_SENT);
        remus_ckpt_mark(ckpt, REMUS_CKPT_MARK_RESUMED);
        remus_ckpt_emit(ckpt);
        bytes += drain(rfd);
    }

    if ( remus_ckpt_last(ckpt, &last) )
    {
        fprintf(stderr, "no record\n");
        return 1;
    }
    remus_ckpt_close(ckpt);
    bytes += drain(rfd);
    close(rfd);

    printf("checkpoints=%ld dropped=%" PRIu64 " bytes=%" PRIu64 "\n",
           k, last.dropped, bytes);
    return 0;
}
