/*
 * Load generator and echo server of bench/churn.mjs, in C: a Node load
 * generator on the shared core was the limit (engines at 40-60% busy), not
 * the engines. One thread, epoll, bounded by time.
 *   churn IP:PORT CONC SECS [TARGET]   CONC loops of connect / (CONNECT TARGET, wait for 200) /
 *                                      100 B out / 100 B echoed back / close; prints JSON
 *   echo IP:PORT...                    echoes what it reads; closes when the client does
 * Built by bench/churn.mjs with `cc -O2`.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static struct sockaddr_in parse(const char *s) {
    struct sockaddr_in a = { .sin_family = AF_INET };
    char buf[64];
    snprintf(buf, sizeof buf, "%s", s);
    char *c = strrchr(buf, ':');
    if (!c) { fprintf(stderr, "bad address %s\n", s); exit(2); }
    *c = 0;
    a.sin_port = htons(atoi(c + 1));
    inet_pton(AF_INET, buf, &a.sin_addr);
    return a;
}

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

static int echo(int argc, char **argv) {
    int ep = epoll_create1(0);
    for (int i = 0; i < argc; i++) {
        struct sockaddr_in a = parse(argv[i]);
        int l = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), one = 1;
        setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(l, (void *)&a, sizeof a) || listen(l, 4096)) { perror("listen"); return 1; }
        struct epoll_event ev = { .events = EPOLLIN, .data.u64 = (1ULL << 32) | (unsigned)l };
        epoll_ctl(ep, EPOLL_CTL_ADD, l, &ev);
    }
    printf("{\"ready\":true}\n");
    fflush(stdout);
    struct epoll_event evs[256];
    char buf[65536];
    for (;;) {
        int n = epoll_wait(ep, evs, 256, -1);
        for (int i = 0; i < n; i++) {
            int fd = (int)(evs[i].data.u64 & 0xffffffff);
            if (evs[i].data.u64 >> 32) {
                int c;
                while ((c = accept4(fd, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                    int one = 1;
                    setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    struct epoll_event ev = { .events = EPOLLIN, .data.u64 = (unsigned)c };
                    epoll_ctl(ep, EPOLL_CTL_ADD, c, &ev);
                }
                continue;
            }
            ssize_t r = read(fd, buf, sizeof buf);
            if (r > 0) { if (write(fd, buf, r) < 0) close(fd); }
            else if (r == 0 || errno != EAGAIN) close(fd);
        }
    }
}

enum { CONNECTING, HEAD, ECHO };
struct slot { int fd, state, got; char head[512]; };

static struct sockaddr_in to;
static const char *target;
static int ep;
static long done, failed;
static char payload[100];

static void begin(struct slot *s) {
    s->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    int one = 1;
    setsockopt(s->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    s->state = CONNECTING;
    s->got = 0;
    if (connect(s->fd, (void *)&to, sizeof to) && errno != EINPROGRESS) { perror("connect"); exit(2); }
    struct epoll_event ev = { .events = EPOLLOUT | EPOLLIN, .data.ptr = s };
    epoll_ctl(ep, EPOLL_CTL_ADD, s->fd, &ev);
}

static void finish(struct slot *s, int ok) {
    if (ok) done++; else failed++;
    close(s->fd);
}

static void step(struct slot *s, unsigned events) {
    if (s->state == CONNECTING) {
        int err = 0; socklen_t l = sizeof err;
        getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &l);
        if (err || (events & (EPOLLERR | EPOLLHUP))) return finish(s, 0), begin(s);
        struct epoll_event ev = { .events = EPOLLIN, .data.ptr = s };
        epoll_ctl(ep, EPOLL_CTL_MOD, s->fd, &ev);
        if (target) {
            char req[256];
            int n = snprintf(req, sizeof req, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target);
            if (write(s->fd, req, n) != n) return finish(s, 0), begin(s);
            s->state = HEAD;
        } else {
            if (write(s->fd, payload, 100) != 100) return finish(s, 0), begin(s);
            s->state = ECHO;
        }
        return;
    }
    char buf[4096];
    ssize_t r = read(s->fd, buf, sizeof buf);
    if (r < 0 && errno == EAGAIN) return;
    if (r <= 0) return finish(s, 0), begin(s);
    if (s->state == HEAD) {
        int room = (int)sizeof s->head - 1 - s->got;
        if (r > room) return finish(s, 0), begin(s);
        memcpy(s->head + s->got, buf, r);
        s->got += r;
        s->head[s->got] = 0;
        char *end = strstr(s->head, "\r\n\r\n");
        if (!end) return;
        if (strncmp(s->head, "HTTP/1.1 200", 12)) return finish(s, 0), begin(s);
        s->got = s->got - (int)(end + 4 - s->head);
        s->state = ECHO;
        if (write(s->fd, payload, 100) != 100) return finish(s, 0), begin(s);
        return;
    }
    s->got += r;
    if (s->got >= 100) finish(s, 1), begin(s);
}

static int churn(int argc, char **argv) {
    if (argc < 3) return 2;
    to = parse(argv[0]);
    int conc = atoi(argv[1]);
    double secs = atof(argv[2]);
    target = argc > 3 ? argv[3] : NULL;
    memset(payload, 'x', sizeof payload);
    ep = epoll_create1(0);
    struct slot *slots = calloc(conc, sizeof *slots);
    double t0 = now(), end = t0 + secs;
    for (int i = 0; i < conc; i++) begin(&slots[i]);
    struct epoll_event evs[256];
    while (now() < end) {
        int n = epoll_wait(ep, evs, 256, 100);
        for (int i = 0; i < n; i++) step(evs[i].data.ptr, evs[i].events);
    }
    double dt = now() - t0;
    printf("{\"connPerSec\":%.1f,\"done\":%ld,\"failed\":%ld}\n", done / dt, done, failed);
    return 0;
}

int main(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "echo")) return echo(argc - 2, argv + 2);
    if (argc > 1 && !strcmp(argv[1], "churn")) return churn(argc - 2, argv + 2);
    fprintf(stderr, "usage: churn|echo ...\n");
    return 2;
}
