/**
 * Reads a request body the runtime's JSON parser left alone (ServiceDefinition.rawBodyPaths), up
 * to a limit: the proxy parses its own JSON so duplicate keys are refused, and the connect page
 * reads a form.
 */
import type { IncomingMessage } from 'node:http';

import { StackError } from '@stack/contracts';
import { readRawBody } from '@stack/runtime';

export function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  return readRawBody(req, limit, { tooLarge: () => new StackError('PAYLOAD_TOO_LARGE', `the request body is larger than ${limit} bytes`, { limit_bytes: limit }) });
}
