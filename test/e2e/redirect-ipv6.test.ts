/** Redirect mode with an IPv6 egress source, gateway and destinations. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLab, ADDR6, type Lab } from '../lab/lab.js';

const [A, B] = ADDR6.inet;

describe('redirect mode over IPv6', () => {
  let lab: Lab;
  beforeAll(async () => {
    lab = await createLab({ ipv6: true, tcp: [`[${A}]:80`, `[${B}]:80`] });
  });
  afterAll(async () => lab?.destroy());

  const tcp = (port: number) => lab.exec('client', ['curl', '-sS', '-m', '3', `telnet://[${ADDR6.pod}]:${port}`]);

  it('maps ports to IPv6 servers, which see the IPv6 egress source', async () => {
    const r = await lab.setupRouter({
      EGRESS_SOURCE: `${ADDR6.source}/64`, EGRESS_GATEWAY: ADDR6.gateway,
      EGRESS_DESTINATION: `80 tcp ${A}\n8080 tcp ${B} 80`,
    });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect((await tcp(80)).stdout).toMatch(new RegExp(`^${A}:80 sees ${ADDR6.source}:\\d+`));
    expect((await tcp(8080)).stdout).toMatch(new RegExp(`^${B}:80 sees ${ADDR6.source}:\\d+`));
  });

  it('refuses unmapped ports at once', async () => {
    const t0 = Date.now();
    const r = await tcp(2222);
    expect(r.code).toBe(7);
    expect(Date.now() - t0).toBeLessThan(2000);
  });
});
