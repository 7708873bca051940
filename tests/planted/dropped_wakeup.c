/* Planted bug 2: one wake-up in N is lost.
 *
 * Every Nth epoll_wait / epoll_pwait on an instance that finds events throws them away
 * and goes back to sleep for the rest of its timeout, as if the waiter had taken the ready
 * list but missed the wake-up. A level-triggered item is found again by the second wait,
 * so only an edge-triggered (or one-shot) event is really lost: the waiter stays blocked
 * until its timeout and returns 0. N is PLANTED_DROP_EVERY (default 2). The count is kept
 * per instance and starts again when its number is reused, so a program that loses a
 * wake-up loses it again when replayed. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <time.h>

#define MAXFD 4096
static unsigned found[MAXFD];       /* waits that found events, per instance */

static int every(void) {
    static int n;
    if (!n) {
        const char *text = getenv("PLANTED_DROP_EVERY");
        n = text ? atoi(text) : 2;
        if (n < 1) n = 2;
    }
    return n;
}

static void fresh(int epfd) {
    if (epfd >= 0 && epfd < MAXFD) __atomic_store_n(&found[epfd], 0, __ATOMIC_SEQ_CST);
}

int epoll_create(int size) {
    static int (*real)(int);
    if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "epoll_create");
    int fd = real(size);
    fresh(fd);
    return fd;
}

int epoll_create1(int flags) {
    static int (*real)(int);
    if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "epoll_create1");
    int fd = real(flags);
    fresh(fd);
    return fd;
}

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* Whether this wait's events are the ones to lose. */
static int lose(int epfd) {
    if (epfd < 0 || epfd >= MAXFD) return 0;
    return __atomic_add_fetch(&found[epfd], 1, __ATOMIC_SEQ_CST) % every() == 0;
}

/* Milliseconds left of `timeout` begun at `start` (-1 stays infinite). */
static int left(int timeout, double start) {
    if (timeout < 0) return -1;
    double rest = timeout - (now_ms() - start);
    return rest > 0 ? (int)rest : 0;
}

typedef int (*pwait_fn)(int, struct epoll_event *, int, int, const sigset_t *);

int epoll_pwait(int epfd, struct epoll_event *events, int maxevents, int timeout,
                const sigset_t *sigmask) {
    static pwait_fn real;
    if (!real) real = (pwait_fn)dlsym(RTLD_NEXT, "epoll_pwait");
    double start = now_ms();
    int n = real(epfd, events, maxevents, timeout, sigmask);
    if (n > 0 && lose(epfd))
        n = real(epfd, events, maxevents, left(timeout, start), sigmask);
    return n;
}

int epoll_wait(int epfd, struct epoll_event *events, int maxevents, int timeout) {
    return epoll_pwait(epfd, events, maxevents, timeout, NULL);
}
