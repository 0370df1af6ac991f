/* Shared between the relay core (fastpath.c) and its JavaScript binding (binding.c). */
#ifndef FASTPATH_H
#define FASTPATH_H
#include <node_api.h>
#include <uv.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stddef.h>

#define MAX_ATT 4        /* connect attempts of one connection, racing or in turn */
#define LINGER_MS 2000   /* after a closing reply: how long what the client still sends is read and dropped */

enum { EV_ACCEPT = 1, EV_HEAD, EV_CONNECT_FAILED, EV_CONNECT_SLOW, EV_CONNECTED, EV_CLOSED, EV_HEAD_TIMEOUT };
enum { REASON_CLOSED, REASON_CLIENT_ERROR, REASON_REMOTE_ERROR, REASON_IDLE, REASON_ENDED, REASON_CLIENT_CLOSED, REASON_SHUTDOWN };
enum { ST_HEAD = 1, ST_WAIT, ST_CONNECTING, ST_RELAY, ST_LINGER, ST_DEAD };
enum { R_LISTENER = 1, R_CLIENT, R_ATTEMPT, R_UPSTREAM };
enum { MODE_RELAY, MODE_HEAD };

typedef struct conn Conn;

/* What an epoll event points at: a listener or one socket of a connection. */
typedef struct side {
  uint8_t role;
  uint8_t idx;       /* attempt number */
  int fd;
  Conn *c;
  double deadline;   /* attempt: connect timeout */
  double race_at;    /* attempt: when JS hears it is slow (0: told, or never) */
} Side;

typedef struct listener {
  uint8_t role;      /* R_LISTENER: first, as in Side */
  uint8_t open;
  uint8_t mode;
  int fd;
  uint32_t id;
  uint32_t idle_ms, head_ms, max_head;
  struct listener *next;
} Listener;

typedef struct { char *buf; size_t len, off; } Pending;

struct conn {
  uint32_t slot, gen, lid;
  uint8_t state, finishing, silent, quiet_connect, reason_after;
  uint8_t eof[2], shut[2];   /* per direction: 0 client -> upstream, 1 upstream -> client */
  int8_t up;                 /* the attempt that connected */
  Side cl;
  Side att[MAX_ATT];
  Pending pend[2];
  char *head;                /* head mode: what was read before JS decided */
  size_t hlen, hcap, seen, rest, max_head;
  char *on_connect;          /* written to the client once connected (a CONNECT's 200) */
  size_t on_connect_len;
  uint64_t from_client, to_client, last_bytes;
  double last_change, deadline;
  uint32_t idle_ms;
  struct sockaddr_in6 peer;  /* an IPv4 peer is kept as a sockaddr_in in the same bytes */
  int err;                   /* the errno that ended it (client or remote error), for error() */
  Conn *next_dead;
};

typedef struct {
  napi_env env;
  napi_ref cb, resource;
  napi_async_context actx;
  uv_poll_t poll;
  uv_timer_t timer;
  int ep;
  uint8_t closed, busy;   /* busy: inside a batch or a sweep, frees wait for its end */
  Conn **slots;
  uint32_t *freelist;
  uint32_t nslots, cap, nfree, gen, live, next_lid, open_listeners;
  Listener *listeners, *dead_listeners;
  Conn *dead;
} Loop;

Conn *fp_find(Loop *L, double id);
void fp_reap(Loop *L);
void fp_dispatch(Loop *L);
void fp_sweep(Loop *L);
void fp_finish(Loop *L, Conn *c, int reason);
void fp_end(Loop *L, Conn *c, const char *reply, size_t n, int reason);
void fp_connected(Loop *L, Conn *c, int i);
napi_value fp_emit(Loop *L, int type, Conn *c, napi_value a, napi_value b, napi_value d);
#endif
