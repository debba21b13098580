/**
 * Puts a credential on a canonical request the way its catalog entry says (bearer, custom
 * header, query parameter or basic), after the caller's own auth headers were dropped. A caller
 * header or query key with the injection's name is refused rather than overwritten silently.
 */
import { StackError } from '@stack/contracts';

import type { CredentialInjection } from '../catalog/catalog.types';
import type { Credential } from '../vault/credential-vault';

export interface Injected {
  headers: Record<string, string>;
  query: Array<[string, string]>;
}

function secretOf(c: Credential): string {
  switch (c.kind) {
    case 'token':
      return c.token;
    case 'value':
      return c.value;
    case 'oauth2':
      return c.access_token;
    case 'basic':
      return c.password;
  }
}

export function inject(auth: CredentialInjection, credential: Credential, callerHeaders: Record<string, string>, callerQuery: ReadonlyArray<[string, string]>): Injected {
  if (credential.kind === 'basic' || auth.type === 'basic') {
    if (credential.kind !== 'basic') throw new StackError('INVALID_REQUEST', 'this service takes a username and password');
    return { headers: { authorization: `Basic ${Buffer.from(`${credential.username}:${credential.password}`).toString('base64')}` }, query: [] };
  }
  const secret = secretOf(credential);
  switch (auth.type) {
    case 'bearer':
      return { headers: { authorization: `Bearer ${secret}` }, query: [] };
    case 'header': {
      const name = (auth.name ?? 'authorization').toLowerCase();
      if (Object.prototype.hasOwnProperty.call(callerHeaders, name)) throw new StackError('INVALID_REQUEST', `the header '${name}' carries the credential and cannot be set by the caller`);
      return { headers: { [name]: `${auth.prefix ?? ''}${secret}` }, query: [] };
    }
    case 'query': {
      const name = auth.name ?? 'api_key';
      if (callerQuery.some(([k]) => k === name)) throw new StackError('INVALID_REQUEST', `the query parameter '${name}' carries the credential and cannot be set by the caller`);
      return { headers: {}, query: [[name, secret]] };
    }
  }
}

/** Replaces every occurrence of each secret (as bytes) with `[REDACTED]`. */
export function scrub(body: Buffer, secrets: readonly string[]): Buffer {
  let out = body;
  for (const s of secrets) {
    if (!s) continue;
    const needle = Buffer.from(s, 'utf8');
    let at = out.indexOf(needle);
    if (at < 0) continue;
    const parts: Buffer[] = [];
    let from = 0;
    while (at >= 0) {
      parts.push(out.subarray(from, at), Buffer.from('[REDACTED]'));
      from = at + needle.length;
      at = out.indexOf(needle, from);
    }
    parts.push(out.subarray(from));
    out = Buffer.concat(parts);
  }
  return out;
}

/** After a cut, the tail might be the start of a secret: drop such a tail so no prefix leaks. */
export function trimSecretPrefixTail(body: Buffer, secrets: readonly string[]): Buffer {
  let end = body.length;
  for (const s of secrets) {
    const needle = Buffer.from(s, 'utf8');
    for (let k = Math.min(needle.length - 1, end); k >= 4; k--) {
      if (body.subarray(end - k, end).equals(needle.subarray(0, k))) {
        end -= k;
        break;
      }
    }
  }
  return body.subarray(0, end);
}
