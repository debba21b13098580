/**
 * What every shape of STACK must show for the foundation (issue 2), written once and run
 * against the six-process topology and against the one process of `npm start`.
 */
import { compileErrors, validate } from '@readme/openapi-parser';

import { PUBLIC_ROUTES, SERVICE_NAMES, type ServiceName } from '@stack/contracts';

interface ReadyBody {
  status: string;
  services: string[];
  checks: Record<string, { ok: boolean; error?: string }>;
  peers?: { service: ServiceName; instance: string; peers: { service: ServiceName; ok: boolean; error?: string }[] }[];
}

export async function expectReady(url: string, services: readonly ServiceName[]): Promise<ReadyBody> {
  const res = await fetch(`${url}/readyz`);
  const body = (await res.json()) as ReadyBody;
  expect({ status: res.status, body: body.status }).toEqual({ status: 200, body: 'ready' });
  const expected = ['bus', 'cache', ...services.map((s) => `database:${s}`)];
  expect(Object.keys(body.checks).sort()).toEqual(expect.arrayContaining(expected));
  for (const name of expected) expect({ name, ...body.checks[name] }).toMatchObject({ name, ok: true });
  return body;
}

/** `/readyz?peers=1`: each service of the process at `url` pings every other service over the bus. */
export async function expectPeersAnswer(url: string, services: readonly ServiceName[]): Promise<void> {
  const res = await fetch(`${url}/readyz?peers=1`);
  const body = (await res.json()) as ReadyBody;
  expect(body.peers?.map((p) => p.service).sort()).toEqual([...services].sort());
  for (const p of body.peers ?? []) {
    const others = SERVICE_NAMES.filter((s) => s !== p.service);
    expect(p.peers.map((x) => x.service).sort()).toEqual([...others].sort());
    for (const peer of p.peers) expect({ from: p.service, to: peer.service, ok: peer.ok, error: peer.error }).toEqual({ from: p.service, to: peer.service, ok: true, error: undefined });
  }
}

/** Every public path lands on the service that owns it (whatever that service answers today). */
export async function expectRoutesToOwners(publicUrl: string, owner: (service: ServiceName) => string): Promise<void> {
  for (const route of PUBLIC_ROUTES) {
    const path = route.exact ? route.path : `${route.path}/e2e-probe`;
    const res = await fetch(`${publicUrl}${path}`);
    await res.arrayBuffer();
    expect({ path, servedBy: res.headers.get('x-stack-services') }).toEqual({ path, servedBy: owner(route.service) });
  }
}

export async function expectOpenApiParses(publicUrl: string): Promise<void> {
  const res = await fetch(`${publicUrl}/v1/openapi.json`);
  expect(res.status).toBe(200);
  const doc = (await res.json()) as { openapi: string; info: { title: string } };
  expect(doc.openapi).toMatch(/^3\./);
  expect(doc.info.title).toBe('STACK');
  // The ecosystem's own parser and validator (OpenAPI 3.x schema plus its semantic rules).
  const result = await validate(structuredClone(doc) as unknown as Parameters<typeof validate>[0]);
  expect({ valid: result.valid, errors: result.valid ? '' : compileErrors(result) }).toEqual({ valid: true, errors: '' });
}

export async function expectErrorEnvelope(publicUrl: string): Promise<void> {
  const res = await fetch(`${publicUrl}/v1/agents/e2e-missing/no-such-route`);
  expect(res.status).toBe(404);
  expect(await res.json()).toEqual({ error: { code: 'NOT_FOUND', message: expect.any(String) } });
}

export async function expectMetrics(url: string): Promise<void> {
  const res = await fetch(`${url}/metrics`);
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toContain('text/plain');
  const text = await res.text();
  for (const series of ['stack_http_requests_total', 'stack_bus_requests_total', 'process_cpu_user_seconds_total']) expect(text).toContain(series);
}

/** JSON log lines carrying the request id a caller sent. */
export async function expectRequestIdLogged(publicUrl: string, logs: () => string[]): Promise<void> {
  const requestId = `e2e-${Date.now()}`;
  const res = await fetch(`${publicUrl}/v1/agents/e2e-log-probe/no-such-route`, { headers: { 'X-Request-Id': requestId } });
  await res.arrayBuffer();
  expect(res.headers.get('x-request-id')).toBe(requestId);
  const end = Date.now() + 5000;
  let line: Record<string, unknown> | undefined;
  while (!line && Date.now() < end) {
    line = logs()
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Record<string, unknown>)
      .find((l) => l.request_id === requestId);
    if (!line) await new Promise((r) => setTimeout(r, 50));
  }
  expect(line).toMatchObject({ request_id: requestId, msg: 'http request', status: 404, path: '/v1/agents/e2e-log-probe/no-such-route' });
}
