/** `stack admin create-owner` run as a person would, against a stack's database. */
import { execFile } from 'node:child_process';
import { join } from 'node:path';

import { STACK_ENTRY, repoRoot } from '@stack/testing';

export function createOwnerWithCli(env: Record<string, string | undefined>, owner: { email: string; password: string; operatorName: string }): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      [join(repoRoot(), STACK_ENTRY), 'admin', 'create-owner', '--email', owner.email, '--password', owner.password, '--operator-name', owner.operatorName],
      { cwd: repoRoot(), env: { PATH: process.env.PATH, HOME: process.env.HOME, ...env }, timeout: 120_000 },
      (err, stdout, stderr) => (err ? reject(new Error(`create-owner failed: ${err.message}\n${stdout}\n${stderr}`)) : resolve(stdout)),
    );
  });
}

/** GET with a bearer token, returning status and parsed JSON. */
export async function getJson(url: string, token: string): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(url, { headers: { authorization: `Bearer ${token}` } });
  const text = await res.text();
  return { status: res.status, body: text ? (JSON.parse(text) as Record<string, unknown>) : {} };
}

export async function sendJson(method: string, url: string, token: string, body?: unknown): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(url, { method, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  return { status: res.status, body: text ? (JSON.parse(text) as Record<string, unknown>) : {} };
}
