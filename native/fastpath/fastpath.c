/*
 * The fast path of the user-space engines: accept, connect and relay in C on
 * an epoll set nested in Node's own event loop (one uv_poll on our epoll fd),
 * so a short connection costs about what it costs haproxy instead of two
 * net.Socket objects, their streams and their garbage (docs/performance.md).
 * Every decision stays in JavaScript: which address, whether a request is
 * allowed, what is logged and counted. C reports events (accept, a request
 * head, connect results, close with byte counts) and carries out verbs
 * (connect, end with a reply, destroy, adopt). Single-threaded: every call
 * and every callback runs on Node's main thread.
 */
#define _GNU_SOURCE
#include <node_api.h>
#include <uv.h>
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fastpath.h"

static char scratch[64 * 1024]; /* one read buffer for every connection: data is written on at once */

static double now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

/* ---- connection table: ids are slot + generation, so a stale id from JS finds nothing ---- */

#define SLOT_BITS 22
#define SLOT_MASK ((1u << SLOT_BITS) - 1)

static double conn_id(Conn *c) { return (double)c->gen * (double)(1u << SLOT_BITS) + c->slot; }

Conn *fp_find(Loop *L, double id) {
  if (id < 0) return NULL;
  uint64_t v = (uint64_t)id;
  uint32_t slot = v & SLOT_MASK, gen = (uint32_t)(v >> SLOT_BITS);
  if (slot >= L->nslots) return NULL;
  Conn *c = L->slots[slot];
  return c && c->gen == gen && c->state != ST_DEAD ? c : NULL;
}

static Conn *conn_new(Loop *L) {
  uint32_t slot;
  if (L->nfree > 0) slot = L->freelist[--L->nfree];
  else {
    if (L->nslots == L->cap) {
      uint32_t cap = L->cap ? L->cap * 2 : 256;
      if (cap > SLOT_MASK) return NULL;
      L->slots = realloc(L->slots, cap * sizeof *L->slots);
      L->freelist = realloc(L->freelist, cap * sizeof *L->freelist);
      L->cap = cap;
    }
    slot = L->nslots++;
  }
  Conn *c = calloc(1, sizeof *c);
  c->slot = slot;
  c->gen = ++L->gen;
  c->cl.fd = -1;
  c->cl.role = R_CLIENT;
  c->cl.c = c;
  for (int i = 0; i < MAX_ATT; i++) { c->att[i].fd = -1; c->att[i].role = R_ATTEMPT; c->att[i].c = c; c->att[i].idx = i; }
  c->up = -1;
  L->slots[slot] = c;
  L->live++;
  return c;
}

static void pending_clear(Pending *p) { free(p->buf); p->buf = NULL; p->len = p->off = 0; }

/* Freed at the end of a batch: an event of this batch may still point at it. */
static void conn_release(Loop *L, Conn *c) {
  c->state = ST_DEAD;
  c->next_dead = L->dead;
  L->dead = c;
  L->slots[c->slot] = NULL;
  L->freelist[L->nfree++] = c->slot;
  L->live--;
}

void fp_reap(Loop *L) {
  if (L->busy) return;
  while (L->dead_listeners) { Listener *l = L->dead_listeners; L->dead_listeners = l->next; free(l); }
  while (L->dead) {
    Conn *c = L->dead;
    L->dead = c->next_dead;
    pending_clear(&c->pend[0]);
    pending_clear(&c->pend[1]);
    free(c->head);
    free(c);
  }
}

static void fd_close(Loop *L, int *fd) {
  if (*fd < 0) return;
  epoll_ctl(L->ep, EPOLL_CTL_DEL, *fd, NULL); /* close alone would leave it registered while a dup lives */
  close(*fd);
  *fd = -1;
}

/* ---- events to JavaScript: cb(type, id, listener, a, b, c) ---- */

static napi_value num(napi_env env, double v) { napi_value r; napi_create_double(env, v, &r); return r; }

napi_value fp_emit(Loop *L, int type, Conn *c, napi_value a, napi_value b, napi_value d) {
  napi_env env = L->env;
  napi_value cb, recv, argv[6], ret = NULL;
  napi_get_reference_value(env, L->cb, &cb);
  napi_get_undefined(env, &recv);
  argv[0] = num(env, type);
  argv[1] = num(env, conn_id(c));
  argv[2] = num(env, c->lid);
  argv[3] = a ? a : recv;
  argv[4] = b ? b : recv;
  argv[5] = d ? d : recv;
  if (napi_call_function(env, recv, cb, 6, argv, &ret) == napi_pending_exception) {
    napi_value err;
    napi_get_and_clear_last_exception(env, &err);
    napi_fatal_exception(env, err); /* an 'uncaughtException', as a throwing 'data' listener would be */
    return NULL;
  }
  return ret;
}

/* Close every socket of the connection and report its totals once. */
void fp_finish(Loop *L, Conn *c, int reason) {
  if (c->state == ST_DEAD || c->finishing) return;
  c->finishing = 1;
  fd_close(L, &c->cl.fd);
  for (int i = 0; i < MAX_ATT; i++) fd_close(L, &c->att[i].fd);
  if (!c->silent) fp_emit(L, EV_CLOSED, c, num(L->env, (double)c->from_client), num(L->env, (double)c->to_client), num(L->env, reason));
  conn_release(L, c);
}

/* ---- relaying ---- */

static int up_fd(Conn *c) { return c->up >= 0 ? c->att[c->up].fd : -1; }

/* Write what is pending for direction d (0: to upstream, 1: to client). 1 when empty, 0 when blocked, -1 on error. */
static int flush(Conn *c, int d) {
  Pending *p = &c->pend[d];
  int fd = d == 0 ? up_fd(c) : c->cl.fd;
  while (p->off < p->len) {
    ssize_t n = send(fd, p->buf + p->off, p->len - p->off, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EAGAIN || errno == EINTR) return errno == EINTR ? flush(c, d) : 0;
      return -1;
    }
    p->off += n;
    if (d == 1) c->to_client += n;
  }
  pending_clear(p);
  return 1;
}

static void pending_add(Pending *p, const char *b, size_t n) {
  if (n == 0) return;
  size_t have = p->len - p->off;
  char *nb = malloc(have + n);
  if (have) memcpy(nb, p->buf + p->off, have);
  memcpy(nb + have, b, n);
  free(p->buf);
  p->buf = nb;
  p->len = have + n;
  p->off = 0;
}

/* Ended by a socket error: its errno is kept for error() (Node names it in its 'error' events). */
static void fail(Loop *L, Conn *c, int reason, int err) {
  c->err = err;
  fp_finish(L, c, reason);
}

static void maybe_done(Loop *L, Conn *c) {
  if (c->shut[0] && c->shut[1]) fp_finish(L, c, REASON_CLOSED);
}

/* The reading side of direction d reached its end and everything read was written: pass the FIN on. */
static void pass_fin(Loop *L, Conn *c, int d) {
  if (!c->eof[d] || c->shut[d] || c->pend[d].len) return;
  shutdown(d == 0 ? up_fd(c) : c->cl.fd, SHUT_WR);
  c->shut[d] = 1;
  maybe_done(L, c);
}

/* Move bytes in direction d (0: client -> upstream, 1: upstream -> client) until a side would block. */
static void pump(Loop *L, Conn *c, int d) {
  if (c->state != ST_RELAY || c->eof[d] || c->pend[d].len) return;
  int in = d == 0 ? c->cl.fd : up_fd(c), out = d == 0 ? up_fd(c) : c->cl.fd;
  for (;;) {
    ssize_t n = read(in, scratch, sizeof scratch);
    if (n > 0) {
      if (d == 0) c->from_client += n;
      ssize_t w = send(out, scratch, n, MSG_NOSIGNAL);
      if (w < 0 && errno != EAGAIN) return fail(L, c, d == 0 ? REASON_REMOTE_ERROR : REASON_CLIENT_ERROR, errno);
      if (w < 0) w = 0;
      if (d == 1) c->to_client += w;
      if (w < n) { pending_add(&c->pend[d], scratch + w, n - w); return; }
      if ((size_t)n < sizeof scratch) continue; /* one more read to see EAGAIN or EOF */
    } else if (n == 0) {
      c->eof[d] = 1;
      return pass_fin(L, c, d);
    } else if (errno == EINTR) {
      continue;
    } else {
      if (errno != EAGAIN) fail(L, c, d == 0 ? REASON_CLIENT_ERROR : REASON_REMOTE_ERROR, errno);
      return;
    }
  }
}

/* A socket of the relay can take more: write what waited for it, then read its peer again. */
static void writable(Loop *L, Conn *c, int d) {
  if (!c->pend[d].len) return;
  int r = flush(c, d);
  if (r < 0) return fail(L, c, d == 0 ? REASON_REMOTE_ERROR : REASON_CLIENT_ERROR, errno);
  if (r == 0) return;
  if (c->state == ST_LINGER) return;
  pass_fin(L, c, d);
  if (c->state == ST_RELAY) pump(L, c, d);
}

/* ---- the lingering close after a reply: the reply leaves, then what the client still sends is read and dropped ---- */

static void linger_read(Loop *L, Conn *c) {
  for (;;) {
    ssize_t n = read(c->cl.fd, scratch, sizeof scratch);
    if (n > 0) { c->from_client += n; continue; }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) return;
    return fp_finish(L, c, c->reason_after);
  }
}

static void linger_step(Loop *L, Conn *c) {
  if (c->pend[1].len) {
    int r = flush(c, 1);
    if (r < 0) return fp_finish(L, c, c->reason_after);
    if (r == 0) return;
  }
  if (!c->shut[1]) { shutdown(c->cl.fd, SHUT_WR); c->shut[1] = 1; }
  linger_read(L, c);
}

void fp_end(Loop *L, Conn *c, const char *reply, size_t n, int reason) {
  for (int i = 0; i < MAX_ATT; i++) if (i != c->up) fd_close(L, &c->att[i].fd);
  if (c->up >= 0) fd_close(L, &c->att[c->up].fd);
  c->up = -1;
  pending_clear(&c->pend[0]);
  pending_add(&c->pend[1], reply, n);
  c->state = ST_LINGER;
  c->reason_after = reason;
  c->deadline = now_ms() + LINGER_MS;
  linger_step(L, c);
}

/* ---- reading a request head (head mode) ---- */

static void head_read(Loop *L, Conn *c) {
  for (;;) {
    if (c->hlen == c->hcap) {
      if (c->hcap >= c->max_head + 4096) break; /* JS answers 431 from what it has */
      c->hcap = c->hcap ? c->hcap * 2 : 2048;
      c->head = realloc(c->head, c->hcap);
    }
    ssize_t n = read(c->cl.fd, c->head + c->hlen, c->hcap - c->hlen);
    if (n > 0) { c->hlen += n; c->from_client += n; continue; }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) break;
    return fp_finish(L, c, n == 0 ? REASON_CLIENT_CLOSED : REASON_CLIENT_ERROR);
  }
  if (c->hlen == c->seen) return;
  c->seen = c->hlen;
  c->state = ST_WAIT;
  napi_value buf;
  napi_create_buffer_copy(L->env, c->hlen, c->head, NULL, &buf);
  uint32_t gen = c->gen, slot = c->slot;
  napi_value r = fp_emit(L, EV_HEAD, c, buf, NULL, NULL);
  bool more = false;
  if (r) napi_get_value_bool(L->env, r, &more);
  /* JS may have ended it, or connected it, in the callback. */
  if (L->slots[slot] != c || c->gen != gen || c->state != ST_WAIT || !more) return;
  c->state = ST_HEAD;
}

/* ---- connect attempts ---- */

static void attempt_done(Loop *L, Conn *c, int i, uint32_t ev) {
  Side *s = &c->att[i];
  int err = 0;
  socklen_t len = sizeof err;
  /* Writable without an error is connected: SO_ERROR is read only for failures. */
  if (!(ev & EPOLLOUT) || (ev & (EPOLLERR | EPOLLHUP)))
    if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) err = errno;
  if (!err && !(ev & EPOLLOUT)) return;
  if (err == EINPROGRESS || err == EALREADY) return;
  if (err) {
    fd_close(L, &s->fd);
    napi_value e;
    napi_create_string_utf8(L->env, uv_err_name(-err), NAPI_AUTO_LENGTH, &e);
    fp_emit(L, EV_CONNECT_FAILED, c, num(L->env, i), e, NULL);
    return;
  }
  fp_connected(L, c, i);
}

void fp_connected(Loop *L, Conn *c, int i) {
  for (int j = 0; j < MAX_ATT; j++) if (j != i) fd_close(L, &c->att[j].fd);
  c->up = i;
  c->att[i].role = R_UPSTREAM;
  c->state = ST_RELAY;
  c->last_bytes = (uint64_t)-1;
  if (c->on_connect) { pending_add(&c->pend[1], c->on_connect, c->on_connect_len); free(c->on_connect); c->on_connect = NULL; }
  if (c->hlen > c->rest) pending_add(&c->pend[0], c->head + c->rest, c->hlen - c->rest);
  free(c->head); c->head = NULL; c->hlen = c->hcap = 0;
  uint32_t gen = c->gen, slot = c->slot;
  if (!c->quiet_connect) fp_emit(L, EV_CONNECTED, c, num(L->env, i), NULL, NULL);
  if (L->slots[slot] != c || c->gen != gen || c->state != ST_RELAY) return;
  writable(L, c, 1);
  if (c->state != ST_RELAY) return;
  writable(L, c, 0);
  if (c->state != ST_RELAY) return;
  pump(L, c, 0);
  if (c->state == ST_RELAY) pump(L, c, 1);
}

/* ---- epoll dispatch ---- */

static void on_listener(Loop *L, Listener *l) {
  for (int k = 0; k < 64; k++) {
    struct sockaddr_in6 sa;
    socklen_t len = sizeof sa;
    int fd = accept4(l->fd, (struct sockaddr *)&sa, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      return; /* EAGAIN, or EMFILE: the next readiness retries */
    }
    Conn *c = conn_new(L);
    if (!c) { close(fd); continue; }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->cl.fd = fd;
    c->peer = sa;
    c->lid = l->id;
    c->idle_ms = l->idle_ms;
    c->max_head = l->max_head;
    c->last_bytes = (uint64_t)-1;
    struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.ptr = &c->cl };
    epoll_ctl(L->ep, EPOLL_CTL_ADD, fd, &ev);
    if (l->mode == MODE_HEAD) {
      c->state = ST_HEAD;
      c->deadline = now_ms() + l->head_ms;
    } else {
      c->state = ST_WAIT;
    }
    /* Head mode too (as engines/fastpath documents it): limits and allow-lists act before any byte is read.
     * The handler may end() or destroy() it here; reading the head follows otherwise. */
    fp_emit(L, EV_ACCEPT, c, NULL, NULL, NULL);
    if (!l->open) return; /* JS closed the listener in the callback */
  }
}

static void on_client(Loop *L, Conn *c, uint32_t ev) {
  switch (c->state) {
  case ST_HEAD:
    return head_read(L, c);
  case ST_WAIT:
  case ST_CONNECTING:
    /* Not reading yet: a FIN waits (half-close is allowed), a reset ends it. */
    if (ev & (EPOLLERR | EPOLLHUP)) {
      int e = 0;
      socklen_t len = sizeof e;
      getsockopt(c->cl.fd, SOL_SOCKET, SO_ERROR, &e, &len);
      fail(L, c, REASON_CLIENT_CLOSED, e);
    }
    return;
  case ST_RELAY:
    if (ev & EPOLLOUT) { writable(L, c, 1); if (c->state != ST_RELAY) return; }
    if (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) pump(L, c, 0);
    return;
  case ST_LINGER:
    return linger_step(L, c);
  default:
    return;
  }
}

static void on_upstream(Loop *L, Conn *c, uint32_t ev) {
  if (c->state != ST_RELAY) return;
  if (ev & EPOLLOUT) { writable(L, c, 0); if (c->state != ST_RELAY) return; }
  if (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) pump(L, c, 1);
}

void fp_dispatch(Loop *L) {
  struct epoll_event evs[128];
  int n = epoll_wait(L->ep, evs, 128, 0);
  for (int i = 0; i < n && !L->closed; i++) {
    Side *s = evs[i].data.ptr;
    if (s->role == R_LISTENER) { Listener *l = (Listener *)s; if (l->open) on_listener(L, l); continue; }
    Conn *c = s->c;
    if (c->state == ST_DEAD || s->fd < 0) continue;
    if (s->role == R_CLIENT) on_client(L, c, evs[i].events);
    else if (s->role == R_UPSTREAM) on_upstream(L, c, evs[i].events);
    else if (c->state == ST_CONNECTING) attempt_done(L, c, s->idx, evs[i].events);
  }
}

/* ---- deadlines, swept (no timer per connection) ---- */

void fp_sweep(Loop *L) {
  double now = now_ms();
  for (uint32_t i = 0; i < L->nslots; i++) {
    Conn *c = L->slots[i];
    if (!c || L->closed) continue;
    uint32_t gen = c->gen;
    switch (c->state) {
    case ST_HEAD:
      if (c->deadline && c->deadline <= now) {
        c->deadline = 0;
        c->state = ST_WAIT;
        fp_emit(L, EV_HEAD_TIMEOUT, c, num(L->env, (double)c->hlen), NULL, NULL);
      }
      break;
    case ST_CONNECTING:
      for (int k = 0; k < MAX_ATT && L->slots[i] == c && c->gen == gen && c->state == ST_CONNECTING; k++) {
        Side *a = &c->att[k];
        if (a->fd < 0) continue;
        if (a->deadline <= now) {
          fd_close(L, &a->fd);
          napi_value e;
          napi_create_string_utf8(L->env, "ETIMEDOUT", NAPI_AUTO_LENGTH, &e);
          fp_emit(L, EV_CONNECT_FAILED, c, num(L->env, k), e, NULL);
        } else if (a->race_at && a->race_at <= now) {
          a->race_at = 0;
          fp_emit(L, EV_CONNECT_SLOW, c, num(L->env, k), NULL, NULL);
        }
      }
      break;
    case ST_RELAY: {
      if (!c->idle_ms) break;
      uint64_t b = c->from_client + c->to_client;
      if (b != c->last_bytes) { c->last_bytes = b; c->last_change = now; }
      else if (now - c->last_change >= c->idle_ms) fp_finish(L, c, REASON_IDLE);
      break;
    }
    case ST_LINGER:
      if (c->deadline <= now) fp_finish(L, c, c->reason_after);
      break;
    default:
      break;
    }
  }
}
