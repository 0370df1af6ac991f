/**
 * The per-name critical section around the datapath update. Updates for one
 * name run one at a time, in the order their answers arrived; an answer
 * waits for its own update (and those queued before it), so no answer for a
 * name is released ahead of the set update its addresses need.
 *
 * Bounded: the whole wait (queue + update) has a deadline; past it the
 * caller answers SERVFAIL. A late update is not cancelled (adding an address
 * late is harmless) but no longer holds the name's queue.
 */

export type GateResult = 'ok' | 'timeout' | 'error';

export class NameGate {
  private readonly tails = new Map<string, Promise<void>>();

  /** Names with an update queued or running (bounded by the forwarder's in-flight cap). */
  get busy(): number { return this.tails.size; }

  run(key: string, update: () => Promise<void>, boundMs: number): Promise<{ result: GateResult; err?: unknown }> {
    const prev = this.tails.get(key);
    let release!: () => void;
    const mine = new Promise<void>((r) => (release = r));
    // The next update for this name waits for this one and every earlier one.
    const tail = prev ? prev.then(() => mine) : mine;
    this.tails.set(key, tail);
    return new Promise((resolve) => {
      let settled = false;
      const finish = (result: GateResult, err?: unknown) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        release();
        if (this.tails.get(key) === tail) this.tails.delete(key);
        resolve({ result, err });
      };
      const timer = setTimeout(() => finish('timeout'), boundMs);
      const start = () => {
        if (settled) return;
        let p: Promise<void>;
        try { p = update(); } catch (e) { finish('error', e); return; }
        p.then(() => finish('ok'), (e) => finish('error', e));
      };
      if (prev) prev.then(start); else start();
    });
  }
}
