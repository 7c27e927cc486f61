import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { LocalFile, RemoteStatus } from './transfer';

/** What an upload in progress keeps locally, so that the next run of the same command continues it. */
export interface UploadState {
  protocol: string;
  name: string;
  file: string;
  size: number;
  mtimeMs: number;
  startedAt: string;
  /** Protocol-specific: the tus upload URL, ... */
  data: Record<string, string>;
}

/**
 * Upload states under `dir` (`$FERRY_STATE_DIR`, `~/.local/state/ferry`), one JSON file per
 * protocol + absolute file path + size + mtime + name: a changed file starts a new upload.
 */
export class StateStore {
  constructor(private readonly dir: string) {}

  private path(protocol: string, file: LocalFile, name: string): string {
    const key = createHash('sha256')
      .update(JSON.stringify([protocol, resolve(file.path), file.size, file.mtimeMs, name]))
      .digest('hex')
      .slice(0, 32);
    return join(this.dir, `upload-${key}.json`);
  }

  load(protocol: string, file: LocalFile, name: string): UploadState | undefined {
    try {
      return JSON.parse(readFileSync(this.path(protocol, file, name), 'utf8')) as UploadState;
    } catch {
      return undefined;
    }
  }

  save(protocol: string, file: LocalFile, name: string, data: Record<string, string>, startedAt = new Date().toISOString()): UploadState {
    const state: UploadState = { protocol, name, file: resolve(file.path), size: file.size, mtimeMs: file.mtimeMs, startedAt, data };
    mkdirSync(this.dir, { recursive: true });
    const path = this.path(protocol, file, name);
    writeFileSync(`${path}.tmp`, JSON.stringify(state));
    renameSync(`${path}.tmp`, path);
    return state;
  }

  /**
   * The latest upload in progress of `protocol` to `name` (by its start), whatever the file:
   * what `ferry status <name>` asks the server about.
   */
  latestFor(protocol: string, name: string): UploadState | undefined {
    let files: string[];
    try {
      files = readdirSync(this.dir).filter((f) => /^upload-[0-9a-f]+\.json$/.test(f));
    } catch {
      return undefined;
    }
    let latest: UploadState | undefined;
    for (const f of files) {
      let state: UploadState;
      try {
        state = JSON.parse(readFileSync(join(this.dir, f), 'utf8')) as UploadState;
      } catch {
        continue; // being replaced, or not ours
      }
      if (state.protocol === protocol && state.name === name && (!latest || state.startedAt > latest.startedAt)) latest = state;
    }
    return latest;
  }

  /** Remembers that the upload of `protocol` to `name` was published as `published` (`ferry status <name>` answers it). */
  published(protocol: string, name: string, published: string): void {
    mkdirSync(this.dir, { recursive: true });
    const path = this.publishedPath(protocol, name);
    writeFileSync(`${path}.tmp`, JSON.stringify({ protocol, name, published, at: new Date().toISOString() }));
    renameSync(`${path}.tmp`, path);
  }

  /** What the last finished upload of `protocol` to `name` from here was published as. */
  publishedAs(protocol: string, name: string): string | undefined {
    try {
      return (JSON.parse(readFileSync(this.publishedPath(protocol, name), 'utf8')) as { published?: string }).published;
    } catch {
      return undefined;
    }
  }

  private publishedPath(protocol: string, name: string): string {
    const key = createHash('sha256')
      .update(JSON.stringify([protocol, name]))
      .digest('hex')
      .slice(0, 32);
    return join(this.dir, `published-${key}.json`);
  }

  remove(protocol: string, file: LocalFile, name: string): void {
    rmSync(this.path(protocol, file, name), { force: true });
  }
}

/** The status of an upload in progress that the local state `local` knows, `committed` bytes persisted on the server. */
export function inProgress(name: string, committed: number, local: UploadState, details: Record<string, unknown> = {}): RemoteStatus {
  return {
    name,
    committed,
    complete: false,
    details: { state: 'in progress', size: local.size, file: local.file, startedAt: local.startedAt, ...details },
  };
}
