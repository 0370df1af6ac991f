/*
 * The relay half of the fast path (fastpath.c has the connection table, the
 * events to JavaScript, the epoll dispatch and the sweep): bytes moved both
 * ways with backpressure and FINs passed on, the lingering close after a
 * reply, request heads read in head mode, connect attempts and their outcome.
 */
#define _GNU_SOURCE
#include <node_api.h>
#include <uv.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fastpath.h"

/* ---- relaying ---- */

static int up_fd(Conn *c) { return c->up >= 0 ? c->att[c->up].fd : -1; }

/*
 * A socket of the relay failed (side 0: the client, 1: the upstream): the
 * connection ends and the other side gets a reset, not a FIN, so that a
 * stream cut short never looks complete.
 */
static void relay_fail(Loop *L, Conn *c, int side, int err) {
  fp_reset_on_close(side == 0 ? up_fd(c) : c->cl.fd);
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
  fp_pending_clear(p);
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
    if (k == BURST) return fp_rearm(L, ins);
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
void fp_relay_event(Loop *L, Conn *c, int side, uint32_t ev) {
  if (ev & EPOLLOUT) { writable(L, c, side == 0 ? 1 : 0); if (c->state != ST_RELAY) return; }
  if (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) { pump(L, c, side, ev); if (c->state != ST_RELAY) return; }
  /* A reset while this side's reading waits on a full peer (or after its EOF): pump did not see it, end now. */
  if (ev & EPOLLERR) {
    int err = fp_so_error(side == 0 ? c->cl.fd : up_fd(c));
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
  fp_rearm(L, &c->cl);
}

/*
 * The client's bytes are read and dropped all along, so a client that uploads
 * before it reads does not block the reply; the connection ends once the
 * reply and a FIN have left and the client's FIN came, or at the deadline
 * (LINGER_MS without progress of the reply, or after the FIN).
 */
void fp_linger_step(Loop *L, Conn *c) {
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
  for (int i = 0; i < MAX_ATT; i++) fp_fd_close(L, &c->att[i].fd);
  c->up = -1;
  fp_pending_clear(&c->pend[0]);
  pending_add(&c->pend[1], reply, n);
  c->eof[0] = 0; /* from here: the client's FIN */
  c->state = ST_LINGER;
  c->reason_after = reason;
  c->deadline = fp_now() + LINGER_MS;
  fp_linger_step(L, c);
}

/* ---- reading a request head (head mode) ---- */

void fp_head_read(Loop *L, Conn *c) {
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

void fp_attempt_done(Loop *L, Conn *c, int i, uint32_t ev) {
  Side *s = &c->att[i];
  int err = 0;
  /* Writable without an error is connected: SO_ERROR is read only for failures. */
  if (!(ev & EPOLLOUT) || (ev & (EPOLLERR | EPOLLHUP))) err = fp_so_error(s->fd);
  if (!err && !(ev & EPOLLOUT)) return;
  if (err == EINPROGRESS || err == EALREADY) return;
  if (err) {
    fp_fd_close(L, &s->fd);
    fp_emit(L, EV_CONNECT_FAILED, c, fp_num(L->env, i), fp_code_of(L->env, err), NULL, NULL);
    return;
  }
  fp_connected(L, c, i, ev);
}

/* Attempt i connected (ev: its event, telling whether the upstream has sent anything yet). */
void fp_connected(Loop *L, Conn *c, int i, uint32_t ev) {
  for (int j = 0; j < MAX_ATT; j++) if (j != i) fp_fd_close(L, &c->att[j].fd);
  c->up = i;
  c->att[i].role = R_UPSTREAM;
  c->state = ST_RELAY;
  c->last_bytes = (uint64_t)-1;
  /* onConnect to the client and the head's payload to the upstream go first: relayed bytes wait behind them. */
  if (c->on_connect) { pending_add(&c->pend[1], c->on_connect, c->on_connect_len); free(c->on_connect); c->on_connect = NULL; }
  if (c->hlen > c->rest) pending_add(&c->pend[0], c->head + c->rest, c->hlen - c->rest);
  free(c->head); c->head = NULL; c->hlen = c->hcap = 0;
  if (!c->quiet_connect) fp_emit(L, EV_CONNECTED, c, fp_num(L->env, i), NULL, NULL, NULL);
  /* Readiness seen before relaying (bytes, a FIN) raises no new event: read what the events said is there. */
  uint32_t seen[2] = { c->acc, ev };
  for (int d = 0; d < 2 && c->state == ST_RELAY && !c->finishing; d++) {
    int read = (seen[d] & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0;
    if (c->pend[d].len) flushed_then(L, c, d, read, seen[d]);
    else if (read) pump(L, c, d, seen[d]);
  }
}
