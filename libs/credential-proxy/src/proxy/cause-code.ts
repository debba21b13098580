/**
 * The system or undici code behind a failed lookup or connection (`ENOTFOUND`, `EAI_AGAIN`,
 * `ECONNREFUSED`, `UND_ERR_SOCKET`, a TLS certificate code…), looked for on the error and its
 * `cause` chain. Only a code-shaped string is returned, never a message, so it can go into an
 * error's details or a log line as it is.
 */
const CODE = /^[A-Z][A-Z0-9_]{1,63}$/;

export function causeCode(err: unknown): string | undefined {
  let e: unknown = err;
  for (let depth = 0; depth < 4 && e !== null && typeof e === 'object'; depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && CODE.test(code)) return code;
    e = (e as { cause?: unknown }).cause;
  }
  return undefined;
}
