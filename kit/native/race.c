/* kit's native race executor: the lost-wake-up loops of the kernel's epoll selftest
 * (tools/testing/selftests/filesystems/epoll/epoll_wakeup_test.c), at C speed.
 *
 *   race SCENARIO ROUNDS SECONDS WAITERS ET WAIT_MS LIMIT_S
 *     SCENARIO  ping_pong | mod_rearm | all_woken | timeout_race | zero_timeout
 *     ROUNDS    rounds to run (zero_timeout: waits per thread)
 *     SECONDS   stop after the round in progress once this much time has gone (no failure)
 *     WAITERS   threads waiting at once (all_woken, zero_timeout)
 *     ET        1: the items are edge-triggered (ping_pong); the others fix their own mode
 *     WAIT_MS   the bound of every wait that must be woken: one that runs out is a lost
 *               wake-up, recorded with its round and waiter, and the loop stops there
 *     LIMIT_S   alarm(2): the process dies if it is still running after this long
 *
 * Nothing is random: a round does the same calls in the same order every time, so a loss
 * is replayed by the same arguments (the interleaving is the scheduler's). Only the
 * descriptors it creates itself are used. Prints one JSON object on stdout:
 *   {"scenario", "planned", "rounds", "lost", "lost_at", "waited_ms", "waiter", "seconds",
 *    "error", "errno"}
 * and exits 0 (a lost wake-up is a result, not a failure) or 1 when a call failed. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#define MAX_WAITERS 64

static const char *scenario;
static long planned, waiters, wait_ms;
static double seconds_cap;
static int et;
static double started;

/* The first loss or failure wins; everyone stops once `stop` is set. */
static int stop;
static long lost_at, lost_ms;    /* the round, and the bound of the wait that ran out */
static char lost_who[48];
static char error[160];
static int error_no;
static pthread_mutex_t first = PTHREAD_MUTEX_INITIALIZER;
static long rounds_done;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int stopped(void) { return __atomic_load_n(&stop, __ATOMIC_ACQUIRE); }
static void halt(void) { __atomic_store_n(&stop, 1, __ATOMIC_RELEASE); }
static int out_of_time(void) { return now() - started >= seconds_cap; }

static void lose(long round, const char *who, long ms) {
    pthread_mutex_lock(&first);
    if (!lost_at && !error[0]) {
        lost_at = round;
        lost_ms = ms;
        snprintf(lost_who, sizeof lost_who, "%s", who);
    }
    pthread_mutex_unlock(&first);
    halt();
}

static void fail(const char *what) {
    int saved = errno;
    pthread_mutex_lock(&first);
    if (!lost_at && !error[0]) {
        snprintf(error, sizeof error, "%s: %s", what, strerror(saved));
        error_no = saved;
    }
    pthread_mutex_unlock(&first);
    halt();
}

/* Spin (yielding: two loaded cores) until *word reaches want, `stop` is set or ms pass.
 * Returns 1 when it got there. */
static int await_at_least(long *word, long want, long ms) {
    double deadline = now() + ms / 1e3;
    for (unsigned spins = 0;; spins++) {
        if (__atomic_load_n(word, __ATOMIC_ACQUIRE) >= want) return 1;
        if (stopped()) return 0;
        if ((spins & 63) == 63 && now() > deadline) return 0;
        sched_yield();
    }
}

/* One bounded wait for one event: 1 got it, 0 ran out (the caller's loss), -1 failed. */
static int wait_one(int ep, struct epoll_event *ev, int ms) {
    for (;;) {
        int n = epoll_wait(ep, ev, 1, ms);
        if (n >= 0) return n;
        if (errno != EINTR) return -1;
    }
}

/* The same for a thread that is not the race's subject: in slices, so that it leaves as
 * soon as another thread has recorded a loss instead of sitting out its own bound. */
static int wait_one_watching(int ep, struct epoll_event *ev, long ms) {
    double deadline = now() + ms / 1e3;
    for (;;) {
        long left = (long)((deadline - now()) * 1e3);
        if (left <= 0 || stopped()) return 0;
        int n = wait_one(ep, ev, left < 100 ? (int)left : 100);
        if (n != 0) return n;
    }
}

static int put(int fd, uint64_t v) { return write(fd, &v, sizeof v) == sizeof v ? 0 : -1; }

static int take(int fd, uint64_t *v) { return read(fd, v, sizeof *v) == sizeof *v ? 0 : -1; }

static int watch(int ep, int fd, uint32_t events, uint64_t data) {
    struct epoll_event ev = {.events = events, .data.u64 = data};
    return epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
}

/* -- ping_pong: an eventfd ping-pong between two threads, each side through its own
 *    epoll instance; the write races with the other side going to sleep. ------------- */

static int ping, pong, ping_ep, pong_ep;
static const uint64_t LAST = 2;   /* the ping that ends the partner's loop */

static void *ping_partner(void *unused) {
    (void)unused;
    struct epoll_event ev;
    uint64_t v;
    for (long round = 1;; round++) {
        int n = wait_one(ping_ep, &ev, wait_ms);
        if (n < 0) { fail("epoll_wait (partner)"); return NULL; }
        if (n == 0) { if (!stopped()) lose(round, "partner", wait_ms); return NULL; }
        if (take(ping, &v) < 0) { fail("read ping (partner)"); return NULL; }
        if (v == LAST) return NULL;
        if (put(pong, 1) < 0) { fail("write pong (partner)"); return NULL; }
    }
}

static int ping_pong(void) {
    if ((ping = eventfd(0, EFD_NONBLOCK)) < 0 || (pong = eventfd(0, EFD_NONBLOCK)) < 0) {
        fail("eventfd");
        return -1;
    }
    if ((ping_ep = epoll_create1(0)) < 0 || (pong_ep = epoll_create1(0)) < 0) {
        fail("epoll_create1");
        return -1;
    }
    uint32_t mode = EPOLLIN | (et ? EPOLLET : 0);
    if (watch(ping_ep, ping, mode, 1) < 0 || watch(pong_ep, pong, mode, 2) < 0) {
        fail("epoll_ctl ADD");
        return -1;
    }
    pthread_t partner;
    if (pthread_create(&partner, NULL, ping_partner, NULL)) { fail("pthread_create"); return -1; }
    struct epoll_event ev;
    uint64_t v;
    for (long round = 1; round <= planned && !stopped() && !out_of_time(); round++) {
        if (put(ping, 1) < 0) { fail("write ping"); break; }
        /* twice the partner's bound: a loss on its side is recorded (by it) first */
        int n = wait_one_watching(pong_ep, &ev, 2 * wait_ms);
        if (n < 0) { fail("epoll_wait (main)"); break; }
        if (n == 0) { if (!stopped()) lose(round, "main thread", 2 * wait_ms); break; }
        if (take(pong, &v) < 0) { fail("read pong"); break; }
        rounds_done = round;
    }
    if (!stopped()) put(ping, LAST);
    pthread_join(partner, NULL);
    return 0;
}

/* -- mod_rearm (epoll59): a waiter on an always-readable edge-triggered eventfd, and the
 *    main thread re-arming it with EPOLL_CTL_MOD as soon as the previous round's wait
 *    returned, racing the waiter's next wait. ------------------------------------------ */

static int rearm_fd, rearm_ep;
static long waited;          /* rounds the waiter got its event in */

static void *rearm_waiter(void *unused) {
    (void)unused;
    struct epoll_event ev;
    for (long round = 1;; round++) {
        int n = wait_one(rearm_ep, &ev, wait_ms);
        if (stopped()) return NULL;
        if (n < 0) { fail("epoll_wait (waiter)"); return NULL; }
        if (n == 0) { lose(round, "waiter", wait_ms); return NULL; }
        __atomic_store_n(&waited, round, __ATOMIC_RELEASE);
    }
}

static int mod_rearm(void) {
    struct epoll_event ev = {.events = EPOLLIN | EPOLLET, .data.u64 = 5};
    if ((rearm_fd = eventfd(1, EFD_NONBLOCK)) < 0) { fail("eventfd"); return -1; }
    if ((rearm_ep = epoll_create1(0)) < 0) { fail("epoll_create1"); return -1; }
    if (epoll_ctl(rearm_ep, EPOLL_CTL_ADD, rearm_fd, &ev) < 0) { fail("epoll_ctl ADD"); return -1; }
    /* the registration's own edge, taken first: every later event is one MOD's */
    if (wait_one(rearm_ep, &ev, 0) != 1) { fail("epoll_wait (the ADD's edge)"); return -1; }
    pthread_t waiter;
    if (pthread_create(&waiter, NULL, rearm_waiter, NULL)) { fail("pthread_create"); return -1; }
    for (long round = 1; round <= planned && !stopped() && !out_of_time(); round++) {
        ev.events = EPOLLIN | EPOLLET;
        if (epoll_ctl(rearm_ep, EPOLL_CTL_MOD, rearm_fd, &ev) < 0) { fail("epoll_ctl MOD"); break; }
        if (!await_at_least(&waited, round, 2 * wait_ms)) {
            if (!stopped()) lose(round, "waiter", 2 * wait_ms);
            break;
        }
        rounds_done = round;
    }
    if (!stopped()) {
        halt();
        epoll_ctl(rearm_ep, EPOLL_CTL_MOD, rearm_fd, &ev);   /* wakes the waiter to leave */
    }
    pthread_join(waiter, NULL);
    return 0;
}

/* -- all_woken (epoll60): WAITERS threads wait on one instance holding WAITERS
 *    edge-triggered eventfds (maxevents 1); all are written at once, racing the waiters
 *    going to sleep; every waiter must be woken and take a different eventfd. -------- */

static int group_ep, group_fd[MAX_WAITERS];
static long generation, ready, finished;

static void *group_waiter(void *arg) {
    long me = (long)arg;
    char who[32];
    snprintf(who, sizeof who, "waiter %ld", me);
    struct epoll_event ev;
    uint64_t v;
    for (long round = 1;; round++) {
        /* the main thread's round takes at most two bounds; then it has gone */
        if (!await_at_least(&generation, round, (long)(seconds_cap * 1e3) + 4 * wait_ms))
            return NULL;
        __atomic_add_fetch(&ready, 1, __ATOMIC_ACQ_REL);
        int n = wait_one(group_ep, &ev, wait_ms);
        if (stopped()) return NULL;
        if (n < 0) { fail("epoll_wait (waiter)"); return NULL; }
        if (n == 0) { lose(round, who, wait_ms); return NULL; }
        if (take(group_fd[ev.data.u64], &v) < 0) {
            /* ET: each eventfd's event goes to one waiter; a second taker finds it empty */
            char what[64];
            snprintf(what, sizeof what, "read eventfd %llu (%s: taken twice?)",
                     (unsigned long long)ev.data.u64, who);
            fail(what);
            return NULL;
        }
        __atomic_add_fetch(&finished, 1, __ATOMIC_ACQ_REL);
    }
}

static int all_woken(void) {
    pthread_t threads[MAX_WAITERS];
    long started_threads = 0;
    if ((group_ep = epoll_create1(0)) < 0) { fail("epoll_create1"); return -1; }
    for (long i = 0; i < waiters; i++) {
        if ((group_fd[i] = eventfd(0, EFD_NONBLOCK)) < 0) { fail("eventfd"); return -1; }
        if (watch(group_ep, group_fd[i], EPOLLIN | EPOLLET, i) < 0) { fail("epoll_ctl ADD"); return -1; }
    }
    for (; started_threads < waiters; started_threads++)
        if (pthread_create(&threads[started_threads], NULL, group_waiter,
                           (void *)started_threads)) {
            fail("pthread_create");
            break;
        }
    for (long round = 1; round <= planned && !stopped() && !out_of_time(); round++) {
        __atomic_store_n(&ready, 0, __ATOMIC_RELEASE);
        __atomic_store_n(&finished, 0, __ATOMIC_RELEASE);
        __atomic_store_n(&generation, round, __ATOMIC_RELEASE);
        /* every waiter is on its way into epoll_wait: the writes race it going to sleep */
        if (!await_at_least(&ready, waiters, 2 * wait_ms)) {
            if (!stopped()) fail("the waiters did not start their round");
            break;
        }
        for (long i = 0; i < waiters; i++)
            if (put(group_fd[i], 1) < 0) { fail("write"); break; }
        if (!await_at_least(&finished, waiters, 2 * wait_ms)) {
            if (!stopped()) lose(round, "last waiter", 2 * wait_ms);
            break;
        }
        rounds_done = round;
    }
    halt();
    __atomic_store_n(&generation, planned + 1, __ATOMIC_RELEASE);
    for (long i = 0; i < waiters; i++) put(group_fd[i], 1);   /* wake whoever still waits */
    for (long i = 0; i < started_threads; i++) pthread_join(threads[i], NULL);
    return 0;
}

/* -- timeout_race (epoll61): per round three fresh threads: a writer after 10.95 ms, a
 *    waiter with an 11 ms timeout that passes an event it gets on, and a waiter that must
 *    be woken (bounded by WAIT_MS here, -1 in the selftest). -------------------------- */

static int race_fd, race_ep;

static void *race_writer(void *unused) {
    (void)unused;
    usleep(10950);     /* the selftest's timing: the write lands at the other's timeout */
    if (put(race_fd, 1) < 0) fail("write (writer)");
    return NULL;
}

static void *race_timed(void *unused) {
    (void)unused;
    struct epoll_event ev;
    int n = wait_one(race_ep, &ev, 11);
    if (n < 0) fail("epoll_wait (11 ms waiter)");
    if (n == 1 && put(race_fd, 1) < 0) fail("write (11 ms waiter)");
    return NULL;
}

static void *race_unbounded(void *arg) {
    struct epoll_event ev;
    int n = wait_one(race_ep, &ev, wait_ms);
    if (n < 0) fail("epoll_wait (unbounded waiter)");
    if (n == 0) lose((long)arg, "unbounded waiter", wait_ms);
    return NULL;
}

static int timeout_race(void) {
    if ((race_fd = eventfd(0, EFD_NONBLOCK)) < 0) { fail("eventfd"); return -1; }
    if ((race_ep = epoll_create1(0)) < 0) { fail("epoll_create1"); return -1; }
    if (watch(race_ep, race_fd, EPOLLIN | EPOLLET | EPOLLERR | EPOLLHUP, 0) < 0) {
        fail("epoll_ctl ADD");
        return -1;
    }
    for (long round = 1; round <= planned && !stopped() && !out_of_time(); round++) {
        struct epoll_event ev;
        wait_one(race_ep, &ev, 0);      /* a round starts with nothing pending */
        pthread_t t[3];
        void *(*fn[3])(void *) = {race_writer, race_timed, race_unbounded};
        int made = 0;
        for (; made < 3; made++)
            if (pthread_create(&t[made], NULL, fn[made], (void *)round)) {
                fail("pthread_create");
                break;
            }
        for (int i = 0; i < made; i++) pthread_join(t[i], NULL);
        if (stopped()) break;
        rounds_done = round;
    }
    return 0;
}

/* -- zero_timeout (epoll65): WAITERS threads each make ROUNDS zero-timeout waits on one
 *    always-ready level-triggered eventfd; none may come back empty. ---------------- */

static int zero_ep;
static long zero_done[MAX_WAITERS];

static void *zero_waiter(void *arg) {
    long me = (long)arg;
    struct epoll_event ev;
    for (long round = 1; round <= planned; round++) {
        if ((round & 1023) == 0 && (stopped() || out_of_time())) return NULL;
        int n = wait_one(zero_ep, &ev, 0);
        if (n < 0) { fail("epoll_wait"); return NULL; }
        if (n == 0) {
            char who[32];
            snprintf(who, sizeof who, "waiter %ld", me);
            lose(round, who, 0);
            return NULL;
        }
        zero_done[me] = round;
    }
    return NULL;
}

static int zero_timeout(void) {
    int fd = eventfd(1, EFD_NONBLOCK);
    if (fd < 0) { fail("eventfd"); return -1; }
    if ((zero_ep = epoll_create1(0)) < 0) { fail("epoll_create1"); return -1; }
    if (watch(zero_ep, fd, EPOLLIN, 9) < 0) { fail("epoll_ctl ADD"); return -1; }
    pthread_t threads[MAX_WAITERS];
    long made = 0;
    for (; made < waiters; made++)
        if (pthread_create(&threads[made], NULL, zero_waiter, (void *)made)) {
            fail("pthread_create");
            break;
        }
    for (long i = 0; i < made; i++) pthread_join(threads[i], NULL);
    rounds_done = planned;
    for (long i = 0; i < made; i++)
        if (zero_done[i] < rounds_done) rounds_done = zero_done[i];
    return 0;
}

static void json_string(const char *s) {
    putchar('"');
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') putchar('\\');
        putchar((unsigned char)*s < 0x20 ? ' ' : *s);
    }
    putchar('"');
}

int main(int argc, char **argv) {
    if (argc != 8) {
        fprintf(stderr, "usage: race SCENARIO ROUNDS SECONDS WAITERS ET WAIT_MS LIMIT_S\n");
        return 2;
    }
    scenario = argv[1];
    planned = atol(argv[2]);
    seconds_cap = atof(argv[3]);
    waiters = atol(argv[4]);
    et = atoi(argv[5]);
    wait_ms = atol(argv[6]);
    alarm((unsigned)atol(argv[7]));   /* the last resort: SIGALRM ends a hung process */
    prctl(PR_SET_PDEATHSIG, SIGKILL);  /* and it never outlives the kit's checker */
    if (planned < 1 || !(seconds_cap > 0) || waiters < 1 || waiters > MAX_WAITERS || wait_ms < 1) {
        fprintf(stderr, "race: an argument is out of range\n");
        return 2;
    }
    static const struct { const char *name; int (*run)(void); } table[] = {
        {"ping_pong", ping_pong}, {"mod_rearm", mod_rearm}, {"all_woken", all_woken},
        {"timeout_race", timeout_race}, {"zero_timeout", zero_timeout},
    };
    int (*run)(void) = NULL;
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        if (!strcmp(table[i].name, scenario)) run = table[i].run;
    if (!run) {
        fprintf(stderr, "race: unknown scenario %s\n", scenario);
        return 2;
    }
    started = now();
    run();
    double elapsed = now() - started;
    printf("{\"scenario\": ");
    json_string(scenario);
    printf(", \"planned\": %ld, \"rounds\": %ld, \"lost\": %d, \"lost_at\": ", planned,
           rounds_done, lost_at ? 1 : 0);
    if (lost_at) printf("%ld, \"waited_ms\": %ld, \"waiter\": ", lost_at, lost_ms),
                 json_string(lost_who);
    else printf("null, \"waited_ms\": null, \"waiter\": null");
    printf(", \"seconds\": %.6f, \"error\": ", elapsed);
    if (error[0]) json_string(error), printf(", \"errno\": %d}\n", error_no);
    else printf("null, \"errno\": 0}\n");
    return error[0] ? 1 : 0;
}
