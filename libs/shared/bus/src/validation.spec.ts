import { fullFormats } from 'ajv-formats/dist/formats';
import { Type } from '@sinclair/typebox';

import { assertValid, isDateTime } from './validation';

const reference = (fullFormats['date-time'] as { validate: (s: string) => boolean }).validate;

describe('the date-time format', () => {
  it('answers as ajv-formats does for timestamps in the toISOString shape, valid or not', () => {
    let seed = 3;
    const rnd = (n: number) => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    const pad = (n: number, w: number) => String(n).padStart(w, '0');
    let accepted = 0;
    for (let i = 0; i < 20_000; i++) {
      const [y, mo, d, h, mi, s] = [rnd(3000), rnd(14), rnd(33), rnd(26), rnd(62), rnd(62)];
      const text = `${pad(y, 4)}-${pad(mo, 2)}-${pad(d, 2)}T${pad(h, 2)}:${pad(mi, 2)}:${pad(s, 2)}.${pad(rnd(1000), 3)}Z`;
      expect([text, isDateTime(text)]).toEqual([text, reference(text)]);
      if (reference(text)) accepted++;
    }
    expect(accepted).toBeGreaterThan(1000);
  });

  it('answers as ajv-formats does for every other shape, and knows the calendar', () => {
    const cases = [
      '2024-02-29T12:00:00.000Z',
      '2023-02-29T12:00:00.000Z',
      '1900-02-29T00:00:00.000Z',
      '2000-02-29T00:00:00.000Z',
      '2026-04-31T00:00:00.000Z',
      '2026-11-26T23:59:60.000Z',
      '2026-11-26T22:59:60.000Z',
      '2026-11-26T24:00:00.000Z',
      '2026-11-26t10:00:00.000z',
      '2026-11-26 10:00:00Z',
      '2026-11-26T10:00:00+01:00',
      '2026-11-26T10:00:00',
      '2026-11-26T10:00:00.1234567Z',
      '2026-11-2aT10:00:00.000Z',
      '2026-11-26T10:00:00.00aZ',
      '+02026-11-26T10:00:00.000Z',
      '2026-11-26T10:00:00.000Z ',
      '',
      'not a date',
    ];
    for (const c of cases) expect([c, isDateTime(c)]).toEqual([c, reference(c)]);
    expect(isDateTime('2024-02-29T12:00:00.000Z')).toBe(true);
    expect(isDateTime('2023-02-29T12:00:00.000Z')).toBe(false);
  });

  it('is the format schemas are checked with', () => {
    const schema = Type.Object({ at: Type.String({ format: 'date-time' }) });
    expect(() => assertValid(schema, { at: new Date().toISOString() }, 'stamp')).not.toThrow();
    expect(() => assertValid(schema, { at: '2023-02-29T12:00:00.000Z' }, 'stamp')).toThrow(expect.objectContaining({ code: 'INVALID_REQUEST' }));
  });
});
