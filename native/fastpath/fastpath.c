/*
 * The fast path of the user-space engines: accept, connect and relay in C on
 * an epoll set nested in Node's own event loop (one uv_poll on our epoll fd),
 * so a short connection costs about what it costs haproxy instead of two
 * net.Socket objects, their streams and their garbage (docs/performance.md).
 * Every decision stays in JavaScript: which address, whether a request is
 * allowed, what is logged and counted. C reports events (accept, a request
 * head, connect results, close with byte counts) and carries out verbs
 * (connect, end with a reply, destroy, adopt). Single-threaded: every call
 * and every callback runs on Node's main thread. The relaying itself, heads and
 * connects are in relay.c.
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

void fp_pending_clear(Pending *p) { free(p->buf); p->buf = NULL; p->len = p->off = 0; }

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
    fp_pending_clear(&c->pend[0]);
    fp_pending_clear(&c->pend[1]);
    free(c->head);
    free(c->on_connect);
    free(c);
  }
}

void fp_fd_close(Loop *L, int *fd) {
  if (*fd < 0) return;
  /* close() also takes it out of the epoll set: no fd of ours is ever duplicated (adopt() deregisters its own). */
  close(*fd);
  *fd = -1;
}

/* The next close of fd sends a reset (SO_LINGER 0) instead of a FIN. */
void fp_reset_on_close(int fd) {
  if (fd < 0) return;
  struct linger lg = { 1, 0 };
  setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
}

int fp_so_error(int fd) {
  int err = 0;
  socklen_t len = sizeof err;
  if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) err = errno;
  return err;
}

/* Edge-triggered: readiness left unread (a burst cut short) is reported again by the next epoll_wait. */
void fp_rearm(Loop *L, Side *s) {
  struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.ptr = s };
  epoll_ctl(L->ep, EPOLL_CTL_MOD, s->fd, &ev);
}

/* ---- events to JavaScript: cb(type, id, listener, a, b, c, d) ---- */

napi_value fp_num(napi_env env, double v) { napi_value r; napi_create_double(env, v, &r); return r; }

napi_value fp_code_of(napi_env env, int err) {
  napi_value r;
  napi_create_string_utf8(env, uv_err_name(-err), NAPI_AUTO_LENGTH, &r);
  return r;
}

napi_value fp_emit(Loop *L, int type, Conn *c, napi_value a, napi_value b, napi_value d, napi_value e) {
  napi_env env = L->env;
  napi_value cb, recv, argv[7], ret = NULL;
  napi_get_reference_value(env, L->cb, &cb);
  napi_get_undefined(env, &recv);
  argv[0] = fp_num(env, type);
  argv[1] = fp_num(env, conn_id(c));
  argv[2] = fp_num(env, c->lid);
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
  fp_fd_close(L, &c->cl.fd);
  for (int i = 0; i < MAX_ATT; i++) fp_fd_close(L, &c->att[i].fd);
  if (!c->silent) {
    napi_env env = L->env;
    fp_emit(L, EV_CLOSED, c, fp_num(env, (double)c->from_client), fp_num(env, (double)c->to_client), fp_num(env, reason), err ? fp_code_of(env, err) : NULL);
  }
  conn_release(L, c);
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
    if (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) fp_head_read(L, c);
    return;
  case ST_WAIT:
  case ST_CONNECTING:
    /* Not reading yet: a FIN waits (half-close is allowed), a reset ends it. What was seen is read once relaying. */
    c->acc |= ev;
    if (ev & (EPOLLERR | EPOLLHUP)) fp_finish(L, c, REASON_CLIENT_CLOSED, fp_so_error(c->cl.fd));
    return;
  case ST_RELAY:
    return fp_relay_event(L, c, 0, ev);
  case ST_LINGER:
    return fp_linger_step(L, c);
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
    else if (s->role == R_UPSTREAM) { if (c->state == ST_RELAY) fp_relay_event(L, c, 1, evs[i].events); }
    else if (c->state == ST_CONNECTING) fp_attempt_done(L, c, s->idx, evs[i].events);
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
        fp_emit(L, EV_HEAD_TIMEOUT, c, fp_num(L->env, (double)c->hlen), NULL, NULL, NULL);
      }
      break;
    case ST_CONNECTING:
      for (int k = 0; k < MAX_ATT && !c->finishing && c->state == ST_CONNECTING && !L->closing; k++) {
        Side *a = &c->att[k];
        if (a->fd < 0) continue;
        if (a->deadline <= now) {
          fp_fd_close(L, &a->fd);
          fp_emit(L, EV_CONNECT_FAILED, c, fp_num(L->env, k), fp_code_of(L->env, ETIMEDOUT), NULL, NULL);
        } else if (a->race_at && a->race_at <= now) {
          a->race_at = 0;
          fp_emit(L, EV_CONNECT_SLOW, c, fp_num(L->env, k), NULL, NULL, NULL);
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
