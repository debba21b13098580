/**
 * Prints benchmark figures as plain-text tables a person can read in a terminal or paste into
 * an issue, and the command line that reproduces them.
 */
import type { LatencySummary } from './stats';

export interface Column<Row> {
  header: string;
  /** Numbers read best right-aligned; labels left-aligned (the default). */
  align?: 'left' | 'right';
  value(row: Row): string;
}

/** Microseconds with one decimal below 1 ms, whole microseconds above. */
export function formatUs(us: number): string {
  if (!Number.isFinite(us)) return '–';
  return us < 1000 ? us.toFixed(1) : Math.round(us).toLocaleString('en-US');
}

export function formatRate(perSecond: number): string {
  return Number.isFinite(perSecond) ? Math.round(perSecond).toLocaleString('en-US') : '–';
}

export function formatRatio(ratio: number): string {
  return Number.isFinite(ratio) ? `${ratio.toFixed(2)}×` : '–';
}

export function renderTable<Row>(columns: readonly Column<Row>[], rows: readonly Row[]): string {
  const cells = rows.map((r) => columns.map((c) => c.value(r)));
  const widths = columns.map((c, i) => Math.max(c.header.length, ...cells.map((row) => row[i].length)));
  const pad = (text: string, i: number) => (columns[i].align === 'right' ? text.padStart(widths[i]) : text.padEnd(widths[i]));
  const line = (values: readonly string[]) => values.map(pad).join('  ').trimEnd();
  return [line(columns.map((c) => c.header)), line(widths.map((w) => '─'.repeat(w))), ...cells.map(line)].join('\n');
}

/** A latency table row: labels to the left of the figures. */
export interface LatencyRow {
  labels: readonly string[];
  summary: LatencySummary;
}

/** Columns for latency rows; `labelHeaders` name the leading label columns. */
export function latencyColumns(labelHeaders: readonly string[]): Column<LatencyRow>[] {
  const figure = (header: string, value: (s: LatencySummary) => string): Column<LatencyRow> => ({ header, align: 'right', value: (r) => value(r.summary) });
  return [
    ...labelHeaders.map((header, i): Column<LatencyRow> => ({ header, value: (r) => r.labels[i] ?? '' })),
    figure('n', (s) => s.count.toLocaleString('en-US') + (s.truncated ? '*' : '')),
    figure('p50 µs', (s) => formatUs(s.p50Us)),
    figure('p90 µs', (s) => formatUs(s.p90Us)),
    figure('p99 µs', (s) => formatUs(s.p99Us)),
    figure('max µs', (s) => formatUs(s.maxUs)),
    figure('mean µs', (s) => formatUs(s.meanUs)),
    figure('req/s', (s) => formatRate(s.throughputPerSec)),
    figure('errors', (s) => String(s.errors)),
  ];
}

export class Printer {
  constructor(private readonly write: (text: string) => void = (text) => process.stdout.write(text)) {}

  line(text = ''): void {
    this.write(`${text}\n`);
  }

  heading(text: string): void {
    this.line();
    this.line(text);
    this.line('═'.repeat(Math.min(100, text.length)));
  }

  table<Row>(columns: readonly Column<Row>[], rows: readonly Row[]): void {
    this.line(renderTable(columns, rows));
  }

  latencyTable(labelHeaders: readonly string[], rows: readonly LatencyRow[]): void {
    this.table(latencyColumns(labelHeaders), rows);
    if (rows.some((r) => r.summary.truncated)) this.line('* stopped early: the time budget ran out before every request was sent');
    for (const r of rows) {
      if (r.summary.firstError) this.line(`! ${r.labels.join(' / ')}: ${r.summary.errors} failed, first: ${r.summary.firstError}`);
    }
  }

  reproduce(command: string): void {
    this.line();
    this.line(`Reproduce: ${command}`);
  }
}
