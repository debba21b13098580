/**
 * Reads a request body the runtime's JSON parser left alone (ServiceDefinition.rawBodyPaths), up
 * to a limit: the proxy parses its own JSON so duplicate keys are refused, and the connect page
 * reads a form.
 */
import type { IncomingMessage } from 'node:http';

import { StackError } from '@stack/contracts';

export async function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limit) throw new StackError('PAYLOAD_TOO_LARGE', `the request body is larger than ${limit} bytes`, { limit_bytes: limit });
    chunks.push(chunk);
  }
  return Buffer.concat(chunks, size);
}
