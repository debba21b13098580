/**
 * End-to-end checks of the audit log, run against both shapes: REST reads (each recorded in the
 * log before it happens), signed checkpoints checked with the published key, RFC 9162 proofs
 * checked locally, the export checked by `stack audit verify`, and operators kept apart.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

import { entryLeafHash, openNote, parseCheckpoint, parseVerifierKey, verifyConsistency, verifyInclusion, type AuditEntry, type CallerContext } from '@stack/contracts';
import { CallerContextSigner } from '@stack/security';
import { STACK_ENTRY, repoRoot } from '@stack/testing';

import { eventually } from './wait';

const run = promisify(execFile);

export interface AuditTarget {
  publicUrl: string;
  internalSecret: string;
}

interface Item {
  entry: AuditEntry;
  leaf_index: number;
}

/** Until issue 3 lands, REST callers of the audit service present a caller context signed with the internal secret. */
export function auditClient(target: AuditTarget, caller: CallerContext) {
  const token = new CallerContextSigner(Buffer.from(target.internalSecret, 'base64')).sign(caller);
  const get = async (path: string, signal?: AbortSignal) => fetch(`${target.publicUrl}${path}`, { headers: { authorization: `Bearer ${token}` }, ...(signal ? { signal } : {}) });
  const json = async <T>(path: string): Promise<T> => {
    const res = await get(path);
    if (res.status !== 200) throw new Error(`GET ${path}: ${res.status} ${await res.text()}`);
    return (await res.json()) as T;
  };
  return { get, json };
}

export const adminOf = (operator_id: string): CallerContext => ({ issuer: 'auth', kind: 'member', operator_id, member_id: `mem_admin_${operator_id}`, scopes: ['stack:admin', 'stack:audit'] });
export const memberOf = (operator_id: string, member_id: string): CallerContext => ({ issuer: 'auth', kind: 'member', operator_id, member_id, scopes: ['stack:audit'] });

export async function stackAuditVerify(lines: string): Promise<{ code: number; out: string }> {
  const file = join(mkdtempSync(join(tmpdir(), 'audit-e2e-')), 'export.ndjson');
  writeFileSync(file, lines);
  try {
    const { stdout } = await run(process.execPath, [join(repoRoot(), STACK_ENTRY), 'audit', 'verify', file], { cwd: repoRoot(), env: { PATH: process.env.PATH ?? '' } });
    return { code: 0, out: stdout };
  } catch (err) {
    const e = err as { code?: number; stdout?: string };
    return { code: e.code ?? -1, out: e.stdout ?? '' };
  }
}

/** Reads as an admin of `operator` until the log holds `count` of its own read entries; returns the items newest first. */
async function readUntil(target: AuditTarget, operator: string, count: number): Promise<Item[]> {
  const admin = auditClient(target, adminOf(operator));
  return eventually(async () => {
    const page = await admin.json<{ items: Item[] }>('/v1/audit?limit=500');
    return page.items.length >= count ? page.items : undefined;
  }, 20_000, `${count} entries in the log of ${operator}`);
}

export async function expectPublicKeyAndAuth(target: AuditTarget): Promise<string> {
  const res = await fetch(`${target.publicUrl}/v1/audit/public-key`);
  expect(res.status).toBe(200);
  const key = (await res.json()) as { verifier_key: string; algorithm: string };
  expect(key.algorithm).toBe('Ed25519');
  expect(parseVerifierKey(key.verifier_key).name).toMatch(/\/audit$/);
  const anonymous = await fetch(`${target.publicUrl}/v1/audit`);
  expect(anonymous.status).toBe(401);
  expect(((await anonymous.json()) as { error: { code: string } }).error.code).toBe('UNAUTHORIZED');
  return key.verifier_key;
}

export async function expectReadsRecordedAndProven(target: AuditTarget, operator: string): Promise<Item[]> {
  const vkey = await expectPublicKeyAndAuth(target);
  const admin = auditClient(target, adminOf(operator));
  const items = await readUntil(target, operator, 3);
  expect(items[0]!.leaf_index).toBeGreaterThan(items[items.length - 1]!.leaf_index);
  expect(items.every((i) => i.entry.operator_id === operator && i.entry.action === 'audit.list' && i.entry.leaf_index === i.leaf_index)).toBe(true);
  // Cursor pagination, newest first.
  const first = await admin.json<{ items: Item[]; next_cursor?: string }>('/v1/audit?limit=1&action=audit.list');
  expect(first.next_cursor).toBeDefined();
  const second = await admin.json<{ items: Item[] }>(`/v1/audit?limit=1&action=audit.list&cursor=${first.next_cursor}`);
  expect(second.items[0]!.leaf_index).toBeLessThan(first.items[0]!.leaf_index);

  // A checkpoint signed by the published key, and proofs that check against it locally.
  const cp = await eventually(async () => {
    const c = await admin.json<{ tree_size: number; root_hash: string; note: string }>('/v1/audit/checkpoints/latest');
    return c.tree_size >= 3 ? c : undefined;
  }, 20_000, 'a checkpoint of 3 entries');
  const body = parseCheckpoint(openNote(cp.note, [parseVerifierKey(vkey)]).text);
  expect(body.treeSize).toBe(cp.tree_size);
  expect(body.rootHash.toString('base64')).toBe(cp.root_hash);
  const entry = items.find((i) => i.leaf_index < cp.tree_size)!;
  const proof = await admin.json<{ leaf_index: number; tree_size: number; hashes: string[] }>(`/v1/audit/proofs/inclusion?entry_id=${entry.entry.id}&tree_size=${cp.tree_size}`);
  expect(verifyInclusion(entryLeafHash(entry.entry), proof.leaf_index, proof.tree_size, proof.hashes.map((h) => Buffer.from(h, 'base64')), body.rootHash)).toBe(true);
  const leaf0 = items.find((i) => i.leaf_index === 0)!;
  const consistency = await admin.json<{ tree_size_1: number; tree_size_2: number; hashes: string[] }>(`/v1/audit/proofs/consistency?tree_size_1=1&tree_size_2=${cp.tree_size}`);
  expect(verifyConsistency(1, cp.tree_size, consistency.hashes.map((h) => Buffer.from(h, 'base64')), entryLeafHash(leaf0.entry), body.rootHash)).toBe(true);

  // Follow mode: a live tail over SSE delivers an entry appended after it started.
  const controller = new AbortController();
  const tail = await admin.get('/v1/audit?follow=true&action=audit.export', controller.signal);
  expect(tail.headers.get('content-type')).toContain('text/event-stream');
  const reader = tail.body!.getReader();
  const firstEvent = (async () => {
    let text = '';
    while (!text.includes('\n\n')) {
      const { value, done } = await reader.read();
      if (done) break;
      text += new TextDecoder().decode(value);
    }
    return text;
  })();

  // The export checks out offline (and, being a read, is itself recorded: the tail sees it).
  const exported = await admin.get('/v1/audit/export');
  expect(exported.status).toBe(200);
  const text = await exported.text();
  const verified = await stackAuditVerify(text);
  expect(verified).toMatchObject({ code: 0 });
  expect(verified.out).toMatch(/^OK: \d+ entries/);
  const sse = await firstEvent;
  controller.abort();
  expect(sse).toMatch(/^id: \d+\.\d+\nevent: entry\ndata: /);
  expect((JSON.parse(sse.split('data: ')[1]!.split('\n')[0]!) as Item).entry.action).toBe('audit.export');
  return items;
}

export async function expectOperatorsIsolated(target: AuditTarget, a: string, b: string): Promise<void> {
  const itemsA = await readUntil(target, a, 1);
  const adminB = auditClient(target, adminOf(b));
  await readUntil(target, b, 1);
  const listB = await adminB.json<{ items: Item[] }>('/v1/audit?limit=500');
  expect(listB.items.length).toBeGreaterThan(0);
  expect(listB.items.every((i) => i.entry.operator_id === b)).toBe(true);
  const idsA = new Set(itemsA.map((i) => i.entry.id));
  expect(listB.items.some((i) => idsA.has(i.entry.id))).toBe(false);
  // Filtering by A's member from B finds nothing of A.
  const filtered = await adminB.json<{ items: Item[] }>(`/v1/audit?member_id=${encodeURIComponent(itemsA[0]!.entry.member_id ?? '')}`);
  expect(filtered.items.some((i) => idsA.has(i.entry.id))).toBe(false);
  // A's entry does not exist for B: 404, never 403.
  const proof = await adminB.get(`/v1/audit/proofs/inclusion?entry_id=${itemsA[0]!.entry.id}`);
  expect(proof.status).toBe(404);
  expect(((await proof.json()) as { error: { code: string } }).error.code).toBe('NOT_FOUND');
  // A member who is not an admin sees only their own actions.
  const plain = auditClient(target, memberOf(a, 'mem_plain'));
  await plain.json('/v1/audit');
  const own = await eventually(async () => {
    const page = await plain.json<{ items: Item[] }>('/v1/audit?limit=500');
    return page.items.length ? page.items : undefined;
  }, 20_000, 'the member sees their own read');
  expect(own.every((i) => i.entry.member_id === 'mem_plain')).toBe(true);
  expect((await plain.get(`/v1/audit/proofs/inclusion?entry_id=${itemsA[0]!.entry.id}`)).status).toBe(404);
  expect((await plain.get('/v1/audit/export')).status).toBe(403);
}
