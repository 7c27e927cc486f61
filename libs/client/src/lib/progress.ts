import type { ProgressMode } from './args';

/** What a transfer tells about itself as it goes. */
export interface Progress {
  /** The transfer of `total` bytes begins, `from` of them already there (a resume). */
  start(total: number, from: number): void;
  /** `done` bytes of `total` are there now. */
  update(done: number): void;
  /** The transfer ended (successfully or not): the bar's line is closed. */
  end(): void;
  /** A note for the user ("resuming at ...", "retrying ..."), on its own line. */
  note(line: string): void;
}

export interface ProgressTarget {
  write(text: string): unknown;
  isTTY?: boolean;
  columns?: number;
}

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];

/** `1.5 MiB`. */
export function formatBytes(n: number): string {
  let i = 0;
  while (n >= 1024 && i < UNITS.length - 1) {
    n /= 1024;
    i++;
  }
  return i === 0 ? `${n} B` : `${n.toFixed(1)} ${UNITS[i]}`;
}

function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return '--:--';
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const mm = String(Math.floor((s % 3600) / 60)).padStart(2, '0');
  const ss = String(s % 60).padStart(2, '0');
  return h > 0 ? `${h}:${mm}:${ss}` : `${mm}:${ss}`;
}

/** Rate over the bytes moved in this run (a resumed part does not count as speed). */
class Meter {
  total = 0;
  from = 0;
  done = 0;
  private startedAt = Date.now();

  start(total: number, from: number): void {
    this.total = total;
    this.from = from;
    this.done = from;
    this.startedAt = Date.now();
  }

  get rate(): number {
    const seconds = (Date.now() - this.startedAt) / 1000;
    return seconds > 0.05 ? (this.done - this.from) / seconds : 0;
  }

  get percent(): number {
    return this.total > 0 ? (100 * this.done) / this.total : 100;
  }

  get eta(): number {
    return this.rate > 0 ? (this.total - this.done) / this.rate : Infinity;
  }
}

/** One line per file, redrawn in place: `label [=====>    ]  42.0%  26.9 MiB/64.0 MiB  3.2 MiB/s  ETA 00:11`. */
class BarProgress implements Progress {
  private readonly meter = new Meter();
  private lastDraw = 0;
  private drawn = false;

  constructor(
    private readonly out: ProgressTarget,
    private readonly label: string,
  ) {}

  start(total: number, from: number): void {
    this.meter.start(total, from);
    this.draw(true);
  }

  update(done: number): void {
    this.meter.done = done;
    this.draw(false);
  }

  end(): void {
    if (!this.drawn) return;
    this.draw(true);
    this.out.write('\n');
    this.drawn = false;
  }

  note(line: string): void {
    if (this.drawn) this.out.write('\r\x1b[K');
    this.out.write(`${line}\n`);
    if (this.drawn) this.draw(true);
  }

  private draw(force: boolean): void {
    const now = Date.now();
    if (!force && now - this.lastDraw < 100) return;
    this.lastDraw = now;
    const m = this.meter;
    const stats = ` ${m.percent.toFixed(1).padStart(5)}%  ${formatBytes(m.done)}/${formatBytes(m.total)}  ${formatBytes(Math.round(m.rate))}/s  ETA ${formatDuration(m.eta)}`;
    const columns = this.out.columns ?? 80;
    const width = Math.max(10, Math.min(30, columns - stats.length - this.label.length - 4));
    const filled = Math.min(width, Math.floor((width * m.percent) / 100));
    const bar = `[${'='.repeat(filled)}${filled < width ? '>' : ''}${' '.repeat(Math.max(0, width - filled - 1))}]`;
    this.out.write(`\r\x1b[K${this.label} ${bar}${stats}`);
    this.drawn = true;
  }
}

/** JSON lines: `{"event":"start"|"progress"|"end"|"note", ...}`, progress at most twice a second. */
class JsonProgress implements Progress {
  private readonly meter = new Meter();
  private last = 0;

  constructor(
    private readonly out: ProgressTarget,
    private readonly file: string,
    private readonly name: string,
  ) {}

  private emit(event: string, extra: Record<string, unknown> = {}): void {
    const m = this.meter;
    this.out.write(
      `${JSON.stringify({ event, file: this.file, name: this.name, bytes: m.done, total: m.total, percent: Number(m.percent.toFixed(1)), rate: Math.round(m.rate), ...extra })}\n`,
    );
  }

  start(total: number, from: number): void {
    this.meter.start(total, from);
    this.emit('start', { from });
  }

  update(done: number): void {
    this.meter.done = done;
    const now = Date.now();
    if (now - this.last < 500) return;
    this.last = now;
    this.emit('progress');
  }

  end(): void {
    this.emit('end');
  }

  note(line: string): void {
    this.emit('note', { message: line });
  }
}

/** No bar; notes still go out unless `silent`. */
class QuietProgress implements Progress {
  constructor(
    private readonly out: ProgressTarget,
    private readonly silent: boolean,
  ) {}
  start(): void {
    /* nothing to show */
  }
  update(): void {
    /* nothing to show */
  }
  end(): void {
    /* nothing to show */
  }
  note(line: string): void {
    if (!this.silent) this.out.write(`${line}\n`);
  }
}

/** The progress display for `mode`: `auto` is a bar on a terminal and nothing (but notes) otherwise. */
export function createProgress(mode: ProgressMode, out: ProgressTarget, file: string, name: string): Progress {
  if (mode === 'json') return new JsonProgress(out, file, name);
  if (mode === 'bar' || (mode === 'auto' && out.isTTY)) return new BarProgress(out, name);
  return new QuietProgress(out, mode === 'quiet');
}
