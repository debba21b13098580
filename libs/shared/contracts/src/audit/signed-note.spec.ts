import { formatCheckpoint, noteSignerFromSeed, openNote, parseCheckpoint, parseNoteSignerKey, parseVerifierKey, signNote } from './signed-note';

// The example of golang.org/x/mod/sumdb/note (note.go and note_test.go): an independent implementation's vector.
const GO_SKEY = 'PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz';
const GO_VKEY = 'PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW';
const GO_TEXT = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n";
const GO_NOTE = `${GO_TEXT}\n\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n`;

describe('C2SP signed note', () => {
  it('reproduces the Go note package byte for byte', () => {
    const signer = parseNoteSignerKey(GO_SKEY);
    expect(signer.verifierKey).toBe(GO_VKEY);
    expect(signNote(GO_TEXT, signer)).toBe(GO_NOTE);
  });

  it('opens the Go note and refuses a changed one', () => {
    const v = parseVerifierKey(GO_VKEY);
    expect(openNote(GO_NOTE, [v]).text).toBe(GO_TEXT);
    expect(() => openNote(GO_NOTE.replace('cryptography', 'cryptographY'), [v])).toThrow(/does not verify/);
    expect(() => openNote(GO_NOTE, [parseVerifierKey(noteSignerFromSeed('PeterNeumann', Buffer.alloc(32, 7)).verifierKey)])).toThrow(/trusted key/);
  });

  it('formats and parses a tlog-checkpoint', () => {
    const cp = { origin: 'example.com/audit/op_1', treeSize: 42, rootHash: Buffer.alloc(32, 9) };
    const text = formatCheckpoint(cp);
    expect(text).toBe(`example.com/audit/op_1\n42\n${Buffer.alloc(32, 9).toString('base64')}\n`);
    expect(parseCheckpoint(text)).toEqual(cp);
  });
});
