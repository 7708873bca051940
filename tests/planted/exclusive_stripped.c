/* Planted bug 1: EPOLLEXCLUSIVE silently stripped at EPOLL_CTL_ADD.
 *
 * Every check the kernel makes on the request still happens (the real ADD is made with
 * the flag first, so EINVAL for a bad combination or an epoll target is unchanged), and a
 * later EPOLL_CTL_MOD of the pair still fails with EINVAL as documented. Only the wake-up
 * changes: the registration is replaced by one without the flag, so every waiter wakes.
 * An implementation whose validation is right and whose wake-up path is wrong: only a
 * spec that counts woken waiters can tell. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stddef.h>
#include <sys/epoll.h>

typedef int (*ctl_fn)(int, int, int, struct epoll_event *);

/* (epfd, fd) pairs registered with the flag stripped; enough for any spec's few. */
#define PAIRS 64
static struct { int epfd, fd; } stripped[PAIRS];
static int nstripped;

static int find(int epfd, int fd) {
    for (int i = 0; i < nstripped; i++)
        if (stripped[i].epfd == epfd && stripped[i].fd == fd) return i;
    return -1;
}

static void forget(int epfd, int fd) {
    int i = find(epfd, fd);
    if (i >= 0) stripped[i] = stripped[--nstripped];
}

int epoll_ctl(int epfd, int op, int fd, struct epoll_event *event) {
    static ctl_fn real;
    if (!real) real = (ctl_fn)dlsym(RTLD_NEXT, "epoll_ctl");
    if (op == EPOLL_CTL_MOD && find(epfd, fd) >= 0) {
        errno = EINVAL;             /* what the kernel says for an exclusive pair */
        return -1;
    }
    int ret = real(epfd, op, fd, event);
    if (ret != 0) return ret;
    if (op == EPOLL_CTL_DEL) forget(epfd, fd);
    if (op == EPOLL_CTL_ADD) {
        forget(epfd, fd);           /* a number reused after close: a new registration */
        if (event && (event->events & EPOLLEXCLUSIVE)) {
            struct epoll_event plain = *event;
            plain.events &= ~EPOLLEXCLUSIVE;
            int saved = errno;
            real(epfd, EPOLL_CTL_DEL, fd, NULL);
            real(epfd, EPOLL_CTL_ADD, fd, &plain);
            errno = saved;
            if (nstripped < PAIRS) {
                stripped[nstripped].epfd = epfd;
                stripped[nstripped++].fd = fd;
            }
        }
    }
    return ret;
}
