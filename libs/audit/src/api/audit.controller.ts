/**
 * REST of the audit log (DESIGN.md §7). Thin: resolve the caller through the seam, then the same
 * AuditLog methods the bus commands use. Another operator's entries are never visible (404).
 */
import { Controller, Get, Inject, Query, Req, Res } from '@nestjs/common';
import type { Request, Response } from 'express';

import { AUDIT_OUTCOMES, StackError, type CallerContext } from '@stack/contracts';
import { serviceKitToken, type ServiceKit } from '@stack/runtime';

import { AuditLog, MAX_TREE_ID, instant, readScope } from '../log/audit-log.service';
import { AUDIT_CALLER_RESOLVER, type AuditCallerResolver } from './audit-caller.resolver';

type Q = Record<string, string | undefined>;

/** A non-negative integer parameter, at most `max` (a tree id is a Postgres integer). */
function int(q: Q, name: string, max = Number.MAX_SAFE_INTEGER): number | undefined {
  const v = q[name];
  if (v === undefined || v === '') return undefined;
  if (!/^\d{1,15}$/.test(v) || Number(v) > max) throw new StackError('INVALID_REQUEST', `${name} must be a non-negative integer${max < Number.MAX_SAFE_INTEGER ? ` of at most ${max}` : ''}`);
  return Number(v);
}

const treeId = (q: Q) => int(q, 'tree_id', MAX_TREE_ID);

const OUTCOMES = new Set<string>(AUDIT_OUTCOMES);

@Controller('v1/audit')
export class AuditController {
  constructor(
    @Inject(AuditLog) private readonly log: AuditLog,
    @Inject(AUDIT_CALLER_RESOLVER) private readonly callers: AuditCallerResolver,
    @Inject(serviceKitToken('audit')) private readonly kit: ServiceKit,
  ) {}

  private async scope(req: Request, action?: string) {
    const caller = await this.callers.resolve(req);
    const scope = readScope(caller);
    if (action) await recordRead(this.kit, caller, action);
    return scope;
  }

  @Get()
  async list(@Req() req: Request, @Res() res: Response, @Query() q: Q): Promise<void> {
    let scope = await this.scope(req, 'audit.list');
    if (q.outcome && !OUTCOMES.has(q.outcome)) throw new StackError('INVALID_REQUEST', 'outcome must be success, failure or denied');
    const filters = { member_id: q.member_id, agent_id: q.agent_id, passport_jti: q.passport_jti, session_id: q.session_id, action: q.action, outcome: q.outcome, since: instant(q.since, 'since'), until: instant(q.until, 'until') };
    const limit = int(q, 'limit');
    if (limit !== undefined && (limit < 1 || limit > 500)) throw new StackError('INVALID_REQUEST', 'limit must be between 1 and 500');
    if (q.follow !== 'true' && q.follow !== '1') {
      res.json(await this.log.list(scope, { ...filters, limit, cursor: q.cursor }));
      return;
    }
    // Live tail (SSE): the newest entry's index first, then every later entry as it commits.
    res.status(200).set({ 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-store', Connection: 'keep-alive' });
    res.flushHeaders();
    const newest = (await this.log.list(scope, { ...filters, limit: 1 })).items[0];
    let after = newest ? { treeId: newest.tree_id, leafIndex: newest.leaf_index } : { treeId: 0, leafIndex: -1 };
    let closed = false;
    req.on('close', () => {
      closed = true;
    });
    try {
      while (!closed) {
        // The credential again every round: revoked, expired or its member gone, the stream ends.
        scope = readScope(await this.callers.resolve(req));
        if (closed) break;
        const page = await this.log.list(scope, { ...filters, limit: 200, after });
        for (const item of page.items) {
          res.write(`id: ${item.tree_id}.${item.leaf_index}\nevent: entry\ndata: ${JSON.stringify(item)}\n\n`);
          after = { treeId: item.tree_id, leafIndex: item.leaf_index };
        }
        if (page.items.length < 200) await new Promise((r) => setTimeout(r, 500));
      }
    } catch (err) {
      // Headers are gone already: tell the client in the stream, then end it (it may reconnect).
      res.write(`event: error\ndata: ${JSON.stringify({ error: { code: err instanceof StackError ? err.code : 'SERVICE_UNAVAILABLE', message: 'the live tail stopped' } })}\n\n`);
    } finally {
      res.end();
    }
  }

  @Get('export')
  async export(@Req() req: Request, @Res() res: Response, @Query() q: Q): Promise<void> {
    const scope = await this.scope(req, 'audit.export');
    if (scope.memberId || scope.agentId) throw new StackError('FORBIDDEN', 'exporting the log needs the stack:admin scope');
    res.status(200).set({ 'Content-Type': 'application/x-ndjson', 'Content-Disposition': 'attachment; filename="audit-export.ndjson"' });
    for await (const line of this.log.exportLines(scope.operatorId, treeId(q))) {
      if (!res.write(`${line}\n`)) await new Promise((r) => res.once('drain', r));
    }
    res.end();
  }

  @Get('checkpoints/latest')
  async latest(@Req() req: Request, @Query() q: Q) {
    return this.log.latestCheckpoint((await this.scope(req)).operatorId, treeId(q));
  }

  @Get('proofs/inclusion')
  async inclusion(@Req() req: Request, @Query() q: Q) {
    return this.log.inclusionProof(await this.scope(req), { entry_id: q.entry_id, leaf_index: int(q, 'leaf_index'), tree_size: int(q, 'tree_size'), tree_id: treeId(q) });
  }

  @Get('proofs/consistency')
  async consistency(@Req() req: Request, @Query() q: Q) {
    const first = int(q, 'tree_size_1') ?? int(q, 'first');
    if (first === undefined) throw new StackError('INVALID_REQUEST', 'tree_size_1 is required');
    return this.log.consistencyProof(await this.scope(req), { tree_size_1: first, tree_size_2: int(q, 'tree_size_2') ?? int(q, 'second'), tree_id: treeId(q) });
  }

  /** Public: anyone may check checkpoints offline. */
  @Get('public-key')
  publicKey() {
    return this.log.publicKey();
  }
}

/** Reading the log is an action too: recorded (and made durable) before the read happens. */
export async function recordRead(kit: ServiceKit, caller: CallerContext, action: string): Promise<void> {
  await kit.audit.record({ caller, layer: 'system', action, outcome: 'success', target: { service: 'audit' } });
}
