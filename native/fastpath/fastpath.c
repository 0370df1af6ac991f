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
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fastpath.h"

double fp_now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

/* ---- connection table: ids are slot + generation, so a stale id from JS finds nothing ---- */

#define SLOT_BITS 22
#define SLOT_MASK ((1u << SLOT_BITS) - 1)
/* Generations stay below 2^31 so that an id (gen << 22 | slot) is an exact JS number (53 bits). */
#define GEN_MAX ((1u << 31) - 1)

static double conn_id(Conn *c) { return (double)c->gen * (double)(1u << SLOT_BITS) + c->slot; }

/* Any connection not yet released, including one whose closed() is being emitted (peer() works there). */
Conn *fp_find_any(Loop *L, double id) {
  if (!(id >= 1 && id < 9007199254740992.0) || id != (double)(uint64_t)id) return NULL; /* NaN, fractions, negative */
  uint64_t v = (uint64_t)id;
  uint32_t slot = v & SLOT_MASK, gen = (uint32_t)(v >> SLOT_BITS);
  if (slot >= L->nslots) return NULL;
  Conn *c = L->slots[slot];
  return c && c->gen == gen && c->state != ST_DEAD ? c : NULL;
}

/* A live connection: one that is finishing (inside its closed()) is gone for every verb. */
Conn *fp_find(Loop *L, double id) {
  Conn *c = fp_find_any(L, id);
  return c && !c->finishing ? c : NULL;
}

Conn *fp_new_conn(Loop *L) {
  uint32_t slot;
  if (L->nfree > 0) slot = L->freelist[--L->nfree];
  else {
    if (L->nslots == L->cap) {
      uint32_t cap = L->cap ? L->cap * 2 : 256;
      if (cap > SLOT_MASK) return NULL;
      Conn **slots = realloc(L->slots, cap * sizeof *slots);
      if (!slots) return NULL;
      L->slots = slots;
      uint32_t *fl = realloc(L->freelist, cap * sizeof *fl);
      if (!fl) return NULL;
      L->freelist = fl;
      L->cap = cap;
    }
    slot = L->nslots++;
  }
  Conn *c = calloc(1, sizeof *c);
  if (!c) { L->freelist[L->nfree++] = slot; return NULL; }
  c->slot = slot;
  L->gen = L->gen >= GEN_MAX ? 1 : L->gen + 1;
  c->gen = L->gen;
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

/* Freed when the outermost batch, sweep or verb returns: an event or a caller may still point at it. */
static void conn_release(Loop *L, Conn *c) {
  c->state = ST_DEAD;
  c->next_dead = L->dead;
  L->dead = c;
  L->slots[c->slot] = NULL;
  L->freelist[L->nfree++] = c->slot;
  L->live--;
}

void fp_reap(Loop *L) {
  if (L->depth) return;
  while (L->dead_listeners) { Listener *l = L->dead_listeners; L->dead_listeners = l->next; free(l); }
  while (L->dead) {
    Conn *c = L->dead;
    L->dead = c->next_dead;
    pending_clear(&c->pend[0]);
    pending_clear(&c->pend[1]);
    free(c->head);
    free(c->on_connect);
    free(c);
  }
}

static void fd_close(Loop *L, int *fd) {
  if (*fd < 0) return;
  /* close() also takes it out of the epoll set: no fd of ours is ever duplicated (adopt() deregisters its own). */
  close(*fd);
  *fd = -1;
}

/* The next close of fd sends a reset (SO_LINGER 0) instead of a FIN. */
static void reset_on_close(int fd) {
  if (fd < 0) return;
  struct linger lg = { 1, 0 };
  setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
}

static int so_error(int fd) {
  int err = 0;
  socklen_t len = sizeof err;
  if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) err = errno;
  return err;
}

/* Edge-triggered: readiness left unread (a burst cut short) is reported again by the next epoll_wait. */
static void rearm(Loop *L, Side *s) {
  struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.ptr = s };
  epoll_ctl(L->ep, EPOLL_CTL_MOD, s->fd, &ev);
}

/* ---- events to JavaScript: cb(type, id, listener, a, b, c, d) ---- */

static napi_value num(napi_env env, double v) { napi_value r; napi_create_double(env, v, &r); return r; }

static napi_value code_of(napi_env env, int err) {
  napi_value r;
  napi_create_string_utf8(env, uv_err_name(-err), NAPI_AUTO_LENGTH, &r);
  return r;
}

napi_value fp_emit(Loop *L, int type, Conn *c, napi_value a, napi_value b, napi_value d, napi_value e) {
  napi_env env = L->env;
  napi_value cb, recv, argv[7], ret = NULL;
  napi_get_reference_value(env, L->cb, &cb);
  napi_get_undefined(env, &recv);
  argv[0] = num(env, type);
  argv[1] = num(env, conn_id(c));
  argv[2] = num(env, c->lid);
  argv[3] = a ? a : recv;
  argv[4] = b ? b : recv;
  argv[5] = d ? d : recv;
  argv[6] = e ? e : recv;
  if (napi_call_function(env, recv, cb, 7, argv, &ret) == napi_pending_exception) {
    napi_value err;
    napi_get_and_clear_last_exception(env, &err);
    napi_fatal_exception(env, err); /* an 'uncaughtException', as a throwing 'data' listener would be */
    return NULL;
  }
  return ret;
}

/* Close every socket of the connection and report its totals once (err: the errno behind the reason, or 0). */
void fp_finish(Loop *L, Conn *c, int reason, int err) {
  if (c->state == ST_DEAD || c->finishing) return;
  c->finishing = 1;
  fd_close(L, &c->cl.fd);
  for (int i = 0; i < MAX_ATT; i++) fd_close(L, &c->att[i].fd);
  if (!c->silent) {
    napi_env env = L->env;
    fp_emit(L, EV_CLOSED, c, num(env, (double)c->from_client), num(env, (double)c->to_client), num(env, reason), err ? code_of(env, err) : NULL);
  }
  conn_release(L, c);
}

/* ---- relaying ---- */

static int up_fd(Conn *c) { return c->up >= 0 ? c->att[c->up].fd : -1; }

/*
 * A socket of the relay failed (side 0: the client, 1: the upstream): the
 * connection ends and the other side gets a reset, not a FIN, so that a
 * stream cut short never looks complete.
 */
static void relay_fail(Loop *L, Conn *c, int side, int err) {
  reset_on_close(side == 0 ? up_fd(c) : c->cl.fd);
  fp_finish(L, c, side == 0 ? REASON_CLIENT_ERROR : REASON_REMOTE_ERROR, err);
}

/* Write what is pending for direction d (0: to upstream, 1: to client). 1 when empty, 0 when blocked, -errno on error. */
static int flush(Conn *c, int d) {
  Pending *p = &c->pend[d];
  int fd = d == 0 ? up_fd(c) : c->cl.fd;
  while (p->off < p->len) {
    ssize_t n = send(fd, p->buf + p->off, p->len - p->off, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno == EAGAIN ? 0 : -errno;
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
  if (!nb) abort(); /* as V8 does when out of memory */
  if (have) memcpy(nb, p->buf + p->off, have);
  memcpy(nb + have, b, n);
  free(p->buf);
  p->buf = nb;
  p->len = have + n;
  p->off = 0;
}

/* The reading side of direction d reached its end and everything read was written: pass the FIN on. */
static void pass_fin(Loop *L, Conn *c, int d) {
  if (!c->eof[d] || c->shut[d] || c->pend[d].len) return;
  c->shut[d] = 1;
  /* The last direction: close() sends this FIN (nothing is left unread either way), no shutdown() first. */
  if (c->shut[!d]) return fp_finish(L, c, REASON_CLOSED, 0);
  shutdown(d == 0 ? up_fd(c) : c->cl.fd, SHUT_WR);
}

/*
 * Move bytes in direction d (0: client -> upstream, 1: upstream -> client)
 * until the reading side has nothing more (EAGAIN), ends, or the writing side
 * is full (the rest waits in pend[d], and reading resumes once it is written:
 * writable()). After BURST reads the socket is re-armed instead.
 */
static void pump(Loop *L, Conn *c, int d, uint32_t ev) {
  if (c->state != ST_RELAY || c->eof[d] || c->pend[d].len) return;
  /*
   * From an event without a FIN or an error (ev), a short read means the
   * socket is drained: bytes or a FIN arriving later raise a new edge. With
   * no event to go by (ev 0: after a pause), read on until EAGAIN.
   */
  int drained_on_short = ev && !(ev & (EPOLLRDHUP | EPOLLHUP | EPOLLERR));
  Side *ins = d == 0 ? &c->cl : &c->att[c->up];
  int in = ins->fd, out = d == 0 ? up_fd(c) : c->cl.fd;
  for (int k = 0;; k++) {
    if (k == BURST) return rearm(L, ins);
    ssize_t n = read(in, L->scratch, SCRATCH);
    if (n > 0) {
      if (d == 0) c->from_client += n;
      ssize_t w = send(out, L->scratch, n, MSG_NOSIGNAL);
      if (w < 0 && errno != EAGAIN) return relay_fail(L, c, d == 0 ? 1 : 0, errno);
      if (w < 0) w = 0;
      if (d == 1) c->to_client += w;
      if (w < n) return pending_add(&c->pend[d], L->scratch + w, n - w);
      if (drained_on_short && n < SCRATCH) return;
    } else if (n == 0) {
      c->eof[d] = 1;
      return pass_fin(L, c, d);
    } else if (errno != EINTR) {
      if (errno != EAGAIN) relay_fail(L, c, d, errno);
      return;
    }
  }
}

/*
 * A socket of the relay can take more: write what waited for it, then read
 * its peer again (read: whether to; ev: what is known of the reader, as pump()).
 */
static void flushed_then(Loop *L, Conn *c, int d, int read, uint32_t ev) {
  if (!c->pend[d].len) return;
  int r = flush(c, d);
  if (r < 0) return relay_fail(L, c, d == 0 ? 1 : 0, -r);
  if (r == 0) return;
  pass_fin(L, c, d);
  if (read) pump(L, c, d, ev);
}

/* After a pause the reader's events were not acted on: read it until EAGAIN. */
static void writable(Loop *L, Conn *c, int d) { flushed_then(L, c, d, 1, 0); }

/* An event on a relayed socket (side 0: the client, 1: the upstream). */
static void relay_event(Loop *L, Conn *c, int side, uint32_t ev) {
  if (ev & EPOLLOUT) { writable(L, c, side == 0 ? 1 : 0); if (c->state != ST_RELAY) return; }
  if (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) { pump(L, c, side, ev); if (c->state != ST_RELAY) return; }
  /* A reset while this side's reading waits on a full peer (or after its EOF): pump did not see it, end now. */
  if (ev & EPOLLERR) {
    int err = so_error(side == 0 ? c->cl.fd : up_fd(c));
    if (err) relay_fail(L, c, side, err);
  }
}

/* ---- the lingering close after a reply: the reply leaves, then what the client still sends is read and dropped ---- */

static void linger_read(Loop *L, Conn *c) {
  for (int k = 0; k < BURST; k++) {
    ssize_t n = read(c->cl.fd, L->scratch, SCRATCH);
    if (n > 0) { c->from_client += n; continue; }
    if (n == 0) { c->eof[0] = 1; return; }
    if (errno == EINTR) continue;
    if (errno != EAGAIN) fp_finish(L, c, c->reason_after, errno);
    return;
  }
  rearm(L, &c->cl);
}

/*
 * The client's bytes are read and dropped all along, so a client that uploads
 * before it reads does not block the reply; the connection ends once the
 * reply and a FIN have left and the client's FIN came, or at the deadline
 * (LINGER_MS without progress of the reply, or after the FIN).
 */
static void linger_step(Loop *L, Conn *c) {
  if (c->pend[1].len) {
    uint64_t before = c->to_client;
    int r = flush(c, 1);
    if (r < 0) return fp_finish(L, c, c->reason_after, -r);
    if (c->to_client != before) c->deadline = fp_now() + LINGER_MS;
  }
  if (!c->pend[1].len && !c->shut[1]) {
    shutdown(c->cl.fd, SHUT_WR);
    c->shut[1] = 1;
    c->deadline = fp_now() + LINGER_MS;
  }
  if (!c->eof[0]) linger_read(L, c);
  if (c->state == ST_LINGER && !c->finishing && c->eof[0] && c->shut[1]) fp_finish(L, c, c->reason_after, 0);
}

void fp_end(Loop *L, Conn *c, const char *reply, size_t n, int reason) {
  for (int i = 0; i < MAX_ATT; i++) fd_close(L, &c->att[i].fd);
  c->up = -1;
  pending_clear(&c->pend[0]);
  pending_add(&c->pend[1], reply, n);
  c->eof[0] = 0; /* from here: the client's FIN */
  c->state = ST_LINGER;
  c->reason_after = reason;
  c->deadline = fp_now() + LINGER_MS;
  linger_step(L, c);
}

/* ---- reading a request head (head mode) ---- */

static void head_read(Loop *L, Conn *c) {
  int fin = 0;
  for (;;) {
    if (c->hlen == c->max_head) { c->acc |= EPOLLIN; break; } /* the handler decides on what it has; the rest is read once relaying */
    if (c->hlen == c->hcap) {
      size_t cap = c->hcap ? c->hcap * 2 : 2048;
      c->hcap = cap < c->max_head ? cap : c->max_head;
      c->head = realloc(c->head, c->hcap);
      if (!c->head) abort();
    }
    ssize_t n = read(c->cl.fd, c->head + c->hlen, c->hcap - c->hlen);
    if (n > 0) { c->hlen += n; c->from_client += n; continue; }
    if (n == 0) { fin = 1; c->acc |= EPOLLRDHUP; break; }
    if (errno == EINTR) continue;
    if (errno == EAGAIN) break;
    return fp_finish(L, c, REASON_CLIENT_ERROR, errno);
  }
  /* A FIN right after the head is allowed (the request is still answered); with no new bytes, the client left. */
  if (c->hlen == c->seen) {
    if (fin) fp_finish(L, c, REASON_CLIENT_CLOSED, 0);
    return;
  }
  c->seen = c->hlen;
  c->state = ST_WAIT;
  napi_value buf;
  napi_create_buffer_copy(L->env, c->hlen, c->head, NULL, &buf);
  napi_value r = fp_emit(L, EV_HEAD, c, buf, NULL, NULL, NULL);
  bool more = false;
  if (r) napi_get_value_bool(L->env, r, &more);
  /* The handler may have ended, connected or adopted it in the callback. */
  if (c->finishing || c->state != ST_WAIT || !more) return;
  if (fin) return fp_finish(L, c, REASON_CLIENT_CLOSED, 0);
  c->state = ST_HEAD;
}

/* ---- connect attempts ---- */

static void attempt_done(Loop *L, Conn *c, int i, uint32_t ev) {
  Side *s = &c->att[i];
  int err = 0;
  /* Writable without an error is connected: SO_ERROR is read only for failures. */
  if (!(ev & EPOLLOUT) || (ev & (EPOLLERR | EPOLLHUP))) err = so_error(s->fd);
  if (!err && !(ev & EPOLLOUT)) return;
  if (err == EINPROGRESS || err == EALREADY) return;
  if (err) {
    fd_close(L, &s->fd);
    fp_emit(L, EV_CONNECT_FAILED, c, num(L->env, i), code_of(L->env, err), NULL, NULL);
    return;
  }
  fp_connected(L, c, i, ev);
}

/* Attempt i connected (ev: its event, telling whether the upstream has sent anything yet). */
void fp_connected(Loop *L, Conn *c, int i, uint32_t ev) {
  for (int j = 0; j < MAX_ATT; j++) if (j != i) fd_close(L, &c->att[j].fd);
  c->up = i;
  c->att[i].role = R_UPSTREAM;
  c->state = ST_RELAY;
  c->last_bytes = (uint64_t)-1;
  /* onConnect to the client and the head's payload to the upstream go first: relayed bytes wait behind them. */
  if (c->on_connect) { pending_add(&c->pend[1], c->on_connect, c->on_connect_len); free(c->on_connect); c->on_connect = NULL; }
  if (c->hlen > c->rest) pending_add(&c->pend[0], c->head + c->rest, c->hlen - c->rest);
  free(c->head); c->head = NULL; c->hlen = c->hcap = 0;
  if (!c->quiet_connect) fp_emit(L, EV_CONNECTED, c, num(L->env, i), NULL, NULL, NULL);
  /* Readiness seen before relaying (bytes, a FIN) raises no new event: read what the events said is there. */
  uint32_t seen[2] = { c->acc, ev };
  for (int d = 0; d < 2 && c->state == ST_RELAY && !c->finishing; d++) {
    int read = (seen[d] & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0;
    if (c->pend[d].len) flushed_then(L, c, d, read, seen[d]);
    else if (read) pump(L, c, d, seen[d]);
  }
}

/* ---- epoll dispatch ---- */

static int accept_one(Loop *L, Listener *l, struct sockaddr_in6 *sa) {
  for (;;) {
    socklen_t len = sizeof *sa;
    int fd = accept4(l->fd, (struct sockaddr *)sa, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0) return fd;
    if (errno == EINTR || errno == ECONNABORTED) continue;
    if ((errno == EMFILE || errno == ENFILE) && L->reserve >= 0) {
      /* Out of fds: the listener stays readable and would spin. Refuse one client with the spare fd. */
      close(L->reserve);
      int x = accept4(l->fd, NULL, NULL, SOCK_CLOEXEC);
      if (x >= 0) close(x);
      L->reserve = open("/dev/null", O_RDONLY | O_CLOEXEC);
      if (x >= 0) continue;
    }
    return -1;
  }
}

static void on_listener(Loop *L, Listener *l) {
  for (int k = 0; k < 64; k++) {
    struct sockaddr_in6 sa;
    int fd = accept_one(L, l, &sa);
    if (fd < 0) return; /* EAGAIN: all taken */
    Conn *c = fp_new_conn(L);
    if (!c) { close(fd); continue; }
    c->cl.fd = fd; /* TCP_NODELAY comes from the listening socket */
    c->peer = sa;
    c->lid = l->id;
    c->idle_ms = l->idle_ms;
    c->max_head = l->max_head ? l->max_head : DEFAULT_HEAD;
    c->last_bytes = (uint64_t)-1;
    struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.ptr = &c->cl };
    epoll_ctl(L->ep, EPOLL_CTL_ADD, fd, &ev);
    if (l->mode == MODE_HEAD) {
      c->state = ST_HEAD;
      c->deadline = l->head_ms ? fp_now() + l->head_ms : 0;
    } else {
      c->state = ST_WAIT;
    }
    fp_emit(L, EV_ACCEPT, c, NULL, NULL, NULL, NULL);
    if (!l->open || L->closing) return; /* closed in the callback */
  }
}

static void on_client(Loop *L, Conn *c, uint32_t ev) {
  switch (c->state) {
  case ST_HEAD:
    if (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) head_read(L, c);
    return;
  case ST_WAIT:
  case ST_CONNECTING:
    /* Not reading yet: a FIN waits (half-close is allowed), a reset ends it. What was seen is read once relaying. */
    c->acc |= ev;
    if (ev & (EPOLLERR | EPOLLHUP)) fp_finish(L, c, REASON_CLIENT_CLOSED, so_error(c->cl.fd));
    return;
  case ST_RELAY:
    return relay_event(L, c, 0, ev);
  case ST_LINGER:
    return linger_step(L, c);
  default:
    return;
  }
}

void fp_dispatch(Loop *L) {
  struct epoll_event evs[128];
  int n = epoll_wait(L->ep, evs, 128, 0);
  for (int i = 0; i < n && !L->closing; i++) {
    Side *s = evs[i].data.ptr;
    if (s->role == R_LISTENER) { Listener *l = (Listener *)s; if (l->open) on_listener(L, l); continue; }
    Conn *c = s->c;
    /* Released connections stay allocated until the batch ends; an attempt number is never reused. */
    if (c->state == ST_DEAD || c->finishing || s->fd < 0) continue;
    if (s->role == R_CLIENT) on_client(L, c, evs[i].events);
    else if (s->role == R_UPSTREAM) { if (c->state == ST_RELAY) relay_event(L, c, 1, evs[i].events); }
    else if (c->state == ST_CONNECTING) attempt_done(L, c, s->idx, evs[i].events);
  }
}

/* ---- deadlines, swept (no timer per connection) ---- */

void fp_sweep(Loop *L) {
  double now = fp_now();
  for (uint32_t i = 0; i < L->nslots && !L->closing; i++) {
    Conn *c = L->slots[i];
    if (!c || c->finishing) continue;
    switch (c->state) {
    case ST_HEAD:
      if (c->deadline && c->deadline <= now) {
        c->deadline = 0;
        c->state = ST_WAIT;
        fp_emit(L, EV_HEAD_TIMEOUT, c, num(L->env, (double)c->hlen), NULL, NULL, NULL);
      }
      break;
    case ST_CONNECTING:
      for (int k = 0; k < MAX_ATT && !c->finishing && c->state == ST_CONNECTING && !L->closing; k++) {
        Side *a = &c->att[k];
        if (a->fd < 0) continue;
        if (a->deadline <= now) {
          fd_close(L, &a->fd);
          fp_emit(L, EV_CONNECT_FAILED, c, num(L->env, k), code_of(L->env, ETIMEDOUT), NULL, NULL);
        } else if (a->race_at && a->race_at <= now) {
          a->race_at = 0;
          fp_emit(L, EV_CONNECT_SLOW, c, num(L->env, k), NULL, NULL, NULL);
        }
      }
      break;
    case ST_RELAY: {
      if (!c->idle_ms) break;
      uint64_t b = c->from_client + c->to_client;
      if (b != c->last_bytes) { c->last_bytes = b; c->last_change = now; }
      else if (now - c->last_change >= c->idle_ms) fp_finish(L, c, REASON_IDLE, 0);
      break;
    }
    case ST_LINGER:
      if (c->deadline <= now) fp_finish(L, c, c->reason_after, 0);
      break;
    default:
      break;
    }
  }
}
