/* Planted fault: the native race executor hangs.
 *
 * In a process whose program is the kit's race executor (race-HASH), epoll_wait and
 * epoll_pwait never return, whatever their timeout: a target on which even a bounded wait
 * hangs. The kit's own process (python) is untouched. The executor must be killed at its
 * bound and the behaviour reported as a timeout, not a lost wake-up. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

extern char *program_invocation_short_name;

static int in_executor(void) {
    return strncmp(program_invocation_short_name, "race-", 5) == 0;
}

typedef int (*pwait_fn)(int, struct epoll_event *, int, int, const sigset_t *);

int epoll_pwait(int epfd, struct epoll_event *events, int maxevents, int timeout,
                const sigset_t *sigmask) {
    static pwait_fn real;
    if (in_executor())
        for (;;) pause();
    if (!real) real = (pwait_fn)dlsym(RTLD_NEXT, "epoll_pwait");
    return real(epfd, events, maxevents, timeout, sigmask);
}

int epoll_wait(int epfd, struct epoll_event *events, int maxevents, int timeout) {
    return epoll_pwait(epfd, events, maxevents, timeout, NULL);
}
