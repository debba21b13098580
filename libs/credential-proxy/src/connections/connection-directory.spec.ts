import { MemoryCache, MemoryStore } from '@stack/cache';

import { ConnectionDirectory } from './connection-directory';
import type { ConnectionRepository, ConnectionRow } from './connection.repository';

/** Two replicas' directories over one shared cache and one table; loads can be held to interleave them. */
function setup() {
  const table = new Map<string, string[]>([['op_a', ['conn_1', 'conn_2']]]);
  const holds: Array<() => void> = [];
  let hold = false;
  const repo = {
    list: async (op: string) => {
      const ids = [...(table.get(op) ?? [])];
      if (hold) await new Promise<void>((resolve) => holds.push(resolve));
      return ids.map((id) => ({ id, operator_id: op }) as ConnectionRow);
    },
    listServices: async () => [],
  } as unknown as ConnectionRepository;
  const store = new MemoryStore();
  const gone: Array<[string, string, string[]]> = [];
  const replica = (name: string) => new ConnectionDirectory(repo, new MemoryCache({ keyPrefix: 'cp:', store }), { onGone: (op, ids) => gone.push([name, op, ids]) });
  return {
    table,
    gone,
    replica,
    holdLoads: (on: boolean) => (hold = on),
    /** Lets every held load go, oldest first — or only the newest. */
    release: (newestOnly = false) => (newestOnly ? holds.pop()?.() : holds.splice(0).forEach((r) => r())),
  };
}

const settle = () => new Promise((r) => setImmediate(r));

describe('ConnectionDirectory', () => {
  it('tells every replica which connections a reload no longer finds (their secrets leave its log redactor)', async () => {
    const { table, gone, replica } = setup();
    const one = replica('one');
    const two = replica('two');
    await one.rows('op_a');
    await two.rows('op_a');
    // Replica one disconnects conn_1 and stamps a new generation; replica two sees it at its next call.
    table.set('op_a', ['conn_2']);
    await one.changed('op_a');
    await two.rows('op_a');
    await settle();
    expect(gone).toEqual([['two', 'op_a', ['conn_1']]]);
    // A new connection is not "gone" from anywhere.
    table.set('op_a', ['conn_2', 'conn_3']);
    await one.changed('op_a');
    await two.rows('op_a');
    await settle();
    expect(gone).toHaveLength(1);
  });

  it('an older load that finishes after a newer one never reports a connection made in between as gone', async () => {
    const { table, gone, replica, holdLoads, release } = setup();
    const one = replica('one');
    const two = replica('two');
    await one.rows('op_a');
    holdLoads(true);
    await two.changed('op_a');
    const older = one.rows('op_a'); // reads conn_1, conn_2
    await settle();
    table.set('op_a', ['conn_1', 'conn_2', 'conn_3']);
    await two.changed('op_a');
    const newer = one.rows('op_a'); // reads all three
    await settle();
    holdLoads(false);
    release(true); // the newer load finishes first
    await newer;
    release();
    await older;
    await settle();
    expect(gone).toEqual([]);
    // conn_3 is still known: disconnecting it later is seen.
    table.set('op_a', ['conn_1', 'conn_2']);
    await two.changed('op_a');
    await one.rows('op_a');
    await settle();
    expect(gone).toEqual([['one', 'op_a', ['conn_3']]]);
  });
});
