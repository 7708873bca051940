/* kit bench: wake-up latency and throughput of one notification mechanism.
 *
 *   notify MECH VIA MODE ROUNDS BURST TIMEOUT_S
 *     MECH     eventfd | eventfd-sem | pipe | signal
 *     VIA      direct | epoll      (epoll: the waiter sleeps in epoll_wait, then reads)
 *     MODE     thread | process    (waker and waiter are two threads, or two processes)
 *
 * Ping-pong: the waker notifies the waiter on channel A, the waiter wakes and answers
 * on channel B (same mechanism); ROUNDS round trips are timed on the waker's side.
 * Throughput: the waker sends BURST notifications as fast as it can; the waiter counts
 * them as they arrive and answers once when it has them all.
 * Signals are real-time signals (queued, not merged): sigwaitinfo, or signalfd via epoll.
 * Prints one JSON object on stdout; on failure {"error": "..."} and exit status 1.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum { EVENTFD, EVENTFD_SEM, PIPE, SIGNAL };
static int mech, use_epoll, use_process;
static long rounds, burst;
static const int WARMUP = 50;

struct chan {
    int rfd, wfd;          /* eventfd: both the same fd; pipe: the two ends */
    int sig;               /* signal: the signal number */
    pid_t pid;             /* signal, process mode: the receiving process */
    pthread_t thread;      /* signal, thread mode: the receiving thread */
};
/* Per side (per thread or process): how it waits on its incoming channel. */
struct waiter {
    struct chan *in;
    int epfd, sfd;         /* epoll fd (or -1), signalfd (signal via epoll) */
};
static struct chan A, B;   /* A: waker -> waiter, B: waiter -> waker */

static void fail(const char *what) {
    char buf[256];
    int n = snprintf(buf, sizeof buf, "{\"error\": \"%s: %s\"}\n", what, strerror(errno));
    (void)!write(1, buf, n);
    _exit(1);
}

static void on_alarm(int sig) {
    (void)sig;
    static const char msg[] = "{\"error\": \"timed out (helper alarm)\"}\n";
    (void)!write(1, msg, sizeof msg - 1);
    _exit(1);
}

/* Process mode: a waiter that dies early would leave the waker waiting for ever. */
static void on_child(int sig) {
    (void)sig;
    int status, saved = errno;
    if (waitpid(-1, &status, WNOHANG) > 0 && !(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
        static const char msg[] = "{\"error\": \"the waiter process died\"}\n";
        (void)!write(1, msg, sizeof msg - 1);
        _exit(1);
    }
    errno = saved;
}

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void send_one(struct chan *c) {
    if (mech == SIGNAL) {
        union sigval v = {.sival_int = 1};
        for (;;) {
            int r = use_process ? sigqueue(c->pid, c->sig, v)
                                : pthread_sigqueue(c->thread, c->sig, v);
            if (r == 0) return;
            if (use_process ? errno != EAGAIN : r != EAGAIN) { if (!use_process) errno = r; fail("sigqueue"); }
            sched_yield();   /* the queue of pending signals is full */
        }
    }
    if (mech == PIPE) {
        char b = 1;
        while (write(c->wfd, &b, 1) != 1)
            if (errno != EINTR && errno != EAGAIN) fail("write(pipe)");
        return;
    }
    uint64_t one = 1;
    while (write(c->wfd, &one, 8) != 8)
        if (errno != EINTR && errno != EAGAIN) fail("write(eventfd)");
}

static void setup_waiter(struct waiter *w, struct chan *in) {
    w->in = in;
    w->epfd = w->sfd = -1;
    if (mech == SIGNAL && use_epoll) {
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, in->sig);
        w->sfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
        if (w->sfd < 0) fail("signalfd");
    }
    if (use_epoll) {
        w->epfd = epoll_create1(EPOLL_CLOEXEC);
        if (w->epfd < 0) fail("epoll_create1");
        int fd = mech == SIGNAL ? w->sfd : in->rfd;
        struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
        if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) fail("epoll_ctl");
    }
}

/* Sleep until at least one notification arrives; return how many were consumed
 * (at most `max`). */
static long wait_some(struct waiter *w, long max) {
    for (;;) {
        if (w->epfd >= 0) {
            struct epoll_event ev;
            int n = epoll_wait(w->epfd, &ev, 1, -1);
            if (n < 0) { if (errno == EINTR) continue; fail("epoll_wait"); }
        }
        long got = 0;
        if (mech == SIGNAL) {
            if (w->sfd >= 0) {
                struct signalfd_siginfo si[64];
                size_t want = (size_t)(max < 64 ? max : 64);
                ssize_t r = read(w->sfd, si, want * sizeof si[0]);
                if (r < 0) { if (errno == EAGAIN || errno == EINTR) continue; fail("read(signalfd)"); }
                got = r / (ssize_t)sizeof si[0];
            } else {
                sigset_t set;
                sigemptyset(&set);
                sigaddset(&set, w->in->sig);
                if (sigwaitinfo(&set, NULL) < 0) { if (errno == EINTR) continue; fail("sigwaitinfo"); }
                got = 1;
            }
        } else if (mech == PIPE) {
            char buf[4096];
            size_t want = (size_t)(max < 4096 ? max : 4096);
            ssize_t r = read(w->in->rfd, buf, want);
            if (r < 0) { if (errno == EAGAIN || errno == EINTR) continue; fail("read(pipe)"); }
            if (r == 0) { errno = EPIPE; fail("read(pipe): end of file"); }
            got = r;
        } else {
            uint64_t v;
            ssize_t r = read(w->in->rfd, &v, 8);
            if (r < 0) { if (errno == EAGAIN || errno == EINTR) continue; fail("read(eventfd)"); }
            got = (long)v;   /* semaphore mode: always 1 */
        }
        if (got > 0) return got;
    }
}

static void wait_all(struct waiter *w, long n) {
    while (n > 0) n -= wait_some(w, n);
}

/* The waiter: answers every ping, then counts the burst and answers once. */
static void *waiter_side(void *arg) {
    (void)arg;
    struct waiter w;
    setup_waiter(&w, &A);
    for (long i = 0; i < WARMUP + rounds; i++) {
        wait_all(&w, 1);
        send_one(&B);
    }
    wait_all(&w, burst);
    send_one(&B);
    return NULL;
}

static int cmp(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static void waker_side(void) {
    struct waiter w;
    setup_waiter(&w, &B);
    int64_t *rtt = malloc(sizeof(int64_t) * (size_t)rounds);
    if (!rtt) fail("malloc");
    for (long i = 0; i < WARMUP + rounds; i++) {
        int64_t t0 = now_ns();
        send_one(&A);
        wait_all(&w, 1);
        if (i >= WARMUP) rtt[i - WARMUP] = now_ns() - t0;
    }
    int64_t t0 = now_ns();
    for (long i = 0; i < burst; i++) send_one(&A);
    wait_all(&w, 1);
    int64_t burst_ns = now_ns() - t0;
    qsort(rtt, (size_t)rounds, sizeof rtt[0], cmp);
    long p99 = (rounds * 99 + 99) / 100 - 1;
    int64_t sum = 0;
    for (long i = 0; i < rounds; i++) sum += rtt[i];
    printf("{\"rounds\": %ld, \"rtt_median_ns\": %lld, \"rtt_p99_ns\": %lld, "
           "\"rtt_mean_ns\": %lld, \"rtt_min_ns\": %lld, \"burst\": %ld, \"burst_ns\": %lld, "
           "\"throughput_per_s\": %.0f}\n",
           rounds, (long long)rtt[rounds / 2], (long long)rtt[p99],
           (long long)(sum / rounds), (long long)rtt[0], burst, (long long)burst_ns,
           burst_ns > 0 ? burst * 1e9 / (double)burst_ns : 0.0);
    fflush(stdout);
}

static void make_chan(struct chan *c, int sig) {
    memset(c, 0, sizeof *c);
    int nb = use_epoll ? 1 : 0;
    if (mech == EVENTFD || mech == EVENTFD_SEM) {
        int flags = EFD_CLOEXEC | (nb ? EFD_NONBLOCK : 0) | (mech == EVENTFD_SEM ? EFD_SEMAPHORE : 0);
        c->rfd = c->wfd = eventfd(0, flags);
        if (c->rfd < 0) fail("eventfd");
    } else if (mech == PIPE) {
        int p[2];
        if (pipe2(p, O_CLOEXEC) < 0) fail("pipe2");
        c->rfd = p[0];
        c->wfd = p[1];
        if (nb && fcntl(c->rfd, F_SETFL, O_NONBLOCK) < 0) fail("fcntl");
    } else {
        c->sig = sig;
    }
}

int main(int argc, char **argv) {
    if (argc != 7) {
        fprintf(stderr, "usage: %s eventfd|eventfd-sem|pipe|signal direct|epoll "
                        "thread|process ROUNDS BURST TIMEOUT_S\n", argv[0]);
        return 2;
    }
    const char *m = argv[1];
    mech = !strcmp(m, "eventfd") ? EVENTFD : !strcmp(m, "eventfd-sem") ? EVENTFD_SEM
         : !strcmp(m, "pipe") ? PIPE : !strcmp(m, "signal") ? SIGNAL : -1;
    use_epoll = !strcmp(argv[2], "epoll");
    use_process = !strcmp(argv[3], "process");
    rounds = atol(argv[4]);
    burst = atol(argv[5]);
    int timeout = atoi(argv[6]);
    if (mech < 0 || rounds < 1 || burst < 1 || timeout < 1) {
        fprintf(stderr, "bad arguments\n");
        return 2;
    }
    signal(SIGALRM, on_alarm);
    alarm((unsigned)timeout);
    /* Both real-time signals stay blocked everywhere: they are only ever waited for. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGRTMIN);
    sigaddset(&set, SIGRTMIN + 1);
    if (sigprocmask(SIG_BLOCK, &set, NULL) < 0) fail("sigprocmask");
    make_chan(&A, SIGRTMIN);
    make_chan(&B, SIGRTMIN + 1);
    if (use_process) {
        A.pid = 0;
        B.pid = getpid();
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_child;
        sa.sa_flags = SA_RESTART | SA_NOCLDSTOP;
        sigaction(SIGCHLD, &sa, NULL);
        fflush(stdout);
        pid_t child = fork();
        if (child < 0) fail("fork");
        if (child == 0) {
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            if (getppid() != B.pid) _exit(1);
            waiter_side(NULL);
            _exit(0);
        }
        A.pid = child;
        waker_side();
        signal(SIGCHLD, SIG_DFL);
        int status;
        waitpid(child, &status, 0);   /* reaped by on_child already, or now */
    } else {
        B.thread = pthread_self();
        int r = pthread_create(&A.thread, NULL, waiter_side, NULL);
        if (r) { errno = r; fail("pthread_create"); }
        waker_side();
        pthread_join(A.thread, NULL);
    }
    return 0;
}
