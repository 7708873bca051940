/* Planted bug 4: EPOLLET stripped on EPOLL_CTL_MOD only.
 *
 * EPOLL_CTL_ADD keeps edge-triggered registrations edge-triggered; a MOD that asks for
 * EPOLLET silently makes the registration level-triggered. Nothing fails: the item is
 * reported again on every wait while it stays ready. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <sys/epoll.h>

typedef int (*ctl_fn)(int, int, int, struct epoll_event *);

int epoll_ctl(int epfd, int op, int fd, struct epoll_event *event) {
    static ctl_fn real;
    if (!real) real = (ctl_fn)dlsym(RTLD_NEXT, "epoll_ctl");
    if (op == EPOLL_CTL_MOD && event) {
        struct epoll_event level = *event;
        level.events &= ~EPOLLET;
        return real(epfd, op, fd, &level);
    }
    return real(epfd, op, fd, event);
}
