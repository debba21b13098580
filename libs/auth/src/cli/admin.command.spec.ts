import { Readable } from 'node:stream';

import { ownerPassword } from './admin.command';

describe('stack admin create-owner: where the password comes from', () => {
  it('reads the first line of standard input with --password-stdin, so it never shows in ps or the shell history', async () => {
    expect(await ownerPassword(['--email', 'a@b.c', '--password-stdin'], Readable.from(['correct horse\n', 'ignored\n']))).toBe('correct horse');
    expect(await ownerPassword(['--password-stdin'], Readable.from([Buffer.from('p@ss word 42\r\n')]))).toBe('p@ss word 42');
    expect(await ownerPassword(['--password-stdin'], Readable.from(['no newline at the end']))).toBe('no newline at the end');
    expect(await ownerPassword(['--password-stdin'], Readable.from(['\n']))).toBeUndefined();
  });

  it('still takes --password (and --password=) for scripts that pass it so', async () => {
    const unused = Readable.from(['never read\n']);
    expect(await ownerPassword(['--email', 'a@b.c', '--password', 'secret value'], unused)).toBe('secret value');
    expect(await ownerPassword(['--password=secret'], unused)).toBe('secret');
    expect(await ownerPassword(['--email', 'a@b.c'], unused)).toBeUndefined();
  });
});
