/* Planted bug 3: an epoll instance never reports its readiness upward.
 *
 * As if an epoll file's poll method always said "nothing ready": an epoll fd added to
 * (or modified in) another instance is registered with no event bits (the flags EPOLLET,
 * EPOLLONESHOT, ... stay, so every check of the request is unchanged), and poll(),
 * ppoll() and select() never see an epoll fd ready; they wait out their timeout instead. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <unistd.h>

#define FLAGS (EPOLLET | EPOLLONESHOT | EPOLLWAKEUP | EPOLLEXCLUSIVE)

static int is_epoll(int fd) {
    char path[64], link[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(path, link, sizeof link - 1);
    if (n <= 0) return 0;
    link[n] = 0;
    return strcmp(link, "anon_inode:[eventpoll]") == 0;
}

typedef int (*ctl_fn)(int, int, int, struct epoll_event *);

int epoll_ctl(int epfd, int op, int fd, struct epoll_event *event) {
    static ctl_fn real;
    if (!real) real = (ctl_fn)dlsym(RTLD_NEXT, "epoll_ctl");
    if ((op == EPOLL_CTL_ADD || op == EPOLL_CTL_MOD) && event && is_epoll(fd)) {
        struct epoll_event silent = *event;
        silent.events &= FLAGS;
        return real(epfd, op, fd, &silent);
    }
    return real(epfd, op, fd, event);
}

/* Asks for nothing on epoll fds: the kernel reports them never ready (an epoll file has
 * no POLLHUP or POLLERR to report regardless), and the call waits its timeout. */
static void silence(struct pollfd *fds, nfds_t nfds, short *saved) {
    for (nfds_t i = 0; i < nfds; i++) {
        saved[i] = fds[i].events;
        if (is_epoll(fds[i].fd)) fds[i].events = 0;
    }
}

static void restore(struct pollfd *fds, nfds_t nfds, const short *saved) {
    for (nfds_t i = 0; i < nfds; i++) fds[i].events = saved[i];
}

int poll(struct pollfd *fds, nfds_t nfds, int timeout) {
    static int (*real)(struct pollfd *, nfds_t, int);
    if (!real) real = (int (*)(struct pollfd *, nfds_t, int))dlsym(RTLD_NEXT, "poll");
    if (nfds > 64) return real(fds, nfds, timeout);
    short saved[64];
    silence(fds, nfds, saved);
    int ret = real(fds, nfds, timeout);
    restore(fds, nfds, saved);
    return ret;
}

typedef int (*ppoll_fn)(struct pollfd *, nfds_t, const struct timespec *, const sigset_t *);

int ppoll(struct pollfd *fds, nfds_t nfds, const struct timespec *timeout,
          const sigset_t *sigmask) {
    static ppoll_fn real;
    if (!real) real = (ppoll_fn)dlsym(RTLD_NEXT, "ppoll");
    if (nfds > 64) return real(fds, nfds, timeout, sigmask);
    short saved[64];
    silence(fds, nfds, saved);
    int ret = real(fds, nfds, timeout, sigmask);
    restore(fds, nfds, saved);
    return ret;
}

typedef int (*select_fn)(int, fd_set *, fd_set *, fd_set *, struct timeval *);

int select(int nfds, fd_set *readfds, fd_set *writefds, fd_set *exceptfds,
           struct timeval *timeout) {
    static select_fn real;
    if (!real) real = (select_fn)dlsym(RTLD_NEXT, "select");
    for (int fd = 0; fd < nfds && fd < FD_SETSIZE; fd++) {
        if (!is_epoll(fd)) continue;
        if (readfds) FD_CLR(fd, readfds);
        if (writefds) FD_CLR(fd, writefds);
        if (exceptfds) FD_CLR(fd, exceptfds);
    }
    return real(nfds, readfds, writefds, exceptfds, timeout);
}
