// A service process that commits a data row and its outbox row in one transaction, then is
// killed (SIGKILL, no cleanup) before any relay could publish. Plain JavaScript on purpose:
// it runs under bare `node`, outside Jest, as a separate process.
// Usage: node commit-and-die.fixture.js <postgres url> <schema> <event id> <payload json>
'use strict';
const { Client } = require('pg');

const [url, schema, id, payload] = process.argv.slice(2);

(async () => {
  const client = new Client({ connectionString: url });
  await client.connect();
  await client.query('BEGIN');
  await client.query(`INSERT INTO "${schema}"."orders" (id) VALUES ($1)`, [id]);
  await client.query(`INSERT INTO "${schema}"."outbox" (id, event, payload, headers) VALUES ($1, 'service.started', $2::jsonb, '{}'::jsonb)`, [id, payload]);
  await client.query('COMMIT');
  process.stdout.write('committed\n');
  process.kill(process.pid, 'SIGKILL');
})().catch((err) => {
  process.stderr.write(`${err.stack}\n`);
  process.exit(1);
});
