import type { IncomingMessage } from 'node:http';
import { PassThrough } from 'node:stream';
import { gzipSync } from 'node:zlib';

import { StackError } from '@stack/contracts';

import { readJsonBody, readRawBody } from './fast-routes';

/** A request body stream as the HTTP server hands it over: headers, and `complete` once it ended. */
function fakeRequest(headers: Record<string, string>): PassThrough & { headers: Record<string, string>; complete: boolean } {
  const req = Object.assign(new PassThrough(), { headers, complete: false });
  req.once('end', () => (req.complete = true));
  return req;
}

const asReq = (r: PassThrough) => r as unknown as IncomingMessage;
const codeOf = (p: Promise<unknown>) => p.then(() => 'resolved', (e: unknown) => (e instanceof StackError ? e.code : String(e)));

describe('reading a body on the lean lane', () => {
  it('rejects, instead of hanging, when the client aborts a gzip upload half-way', async () => {
    const req = fakeRequest({ 'content-type': 'application/json', 'content-encoding': 'gzip' });
    const pending = codeOf(readJsonBody(asReq(req), 1024));
    req.write(gzipSync('{"a":1}').subarray(0, 8));
    await new Promise((r) => setImmediate(r));
    req.destroy();
    expect(await pending).toBe('INVALID_REQUEST');
  });

  it('rejects, instead of hanging, when the client aborts a plain upload half-way', async () => {
    const req = fakeRequest({ 'content-type': 'application/json' });
    const pending = codeOf(readRawBody(asReq(req), 1024));
    req.write('{"a":');
    await new Promise((r) => setImmediate(r));
    req.destroy();
    expect(await pending).toBe('INVALID_REQUEST');
  });

  it('refuses a body past the limit without destroying the stream, and drains the rest', async () => {
    const req = fakeRequest({ 'content-type': 'application/json' });
    const pending = codeOf(readRawBody(asReq(req), 10));
    req.write('x'.repeat(8));
    req.write('x'.repeat(8));
    expect(await pending).toBe('PAYLOAD_TOO_LARGE');
    req.write('x'.repeat(100));
    req.end();
    await new Promise((r) => req.once('end', r));
    expect(req.destroyed || req.complete).toBe(true);
    expect(req.complete).toBe(true);
  });

  it('rejects, instead of hanging, when the body was already read by someone else', async () => {
    const req = fakeRequest({ 'content-type': 'application/json' });
    req.end('{"a":1}');
    req.resume();
    await new Promise((r) => req.once('end', r));
    const outcome = await Promise.race([readRawBody(asReq(req), 1024).then(() => 'resolved', (e: Error) => e.message), new Promise((r) => setTimeout(() => r('hung'), 500))]);
    expect(outcome).toMatch(/already read/);
  });

  it('rejects, instead of hanging, when the client hung up before the body was read (while the caller was authenticated, say)', async () => {
    const req = fakeRequest({ 'content-type': 'application/json' });
    req.write('{"a":');
    req.destroy();
    await new Promise((r) => req.once('close', r));
    const outcome = await Promise.race([codeOf(readRawBody(asReq(req), 1024)), new Promise((r) => setTimeout(() => r('hung'), 500))]);
    expect(outcome).toBe('INVALID_REQUEST');
  });

  it('reads a whole body once it ends', async () => {
    const req = fakeRequest({ 'content-type': 'application/json' });
    const pending = readJsonBody(asReq(req), 1024);
    req.end('{"a":[1,2]}');
    await expect(pending).resolves.toEqual({ a: [1, 2] });
  });
});
