import { createHash, randomBytes } from 'node:crypto';
import type { Readable } from 'node:stream';
import { Authenticator, Principal, Scopes, satisfiesScope } from '@ferry/auth';
import { ReapiInstances, casCatalogObject } from '@ferry/bytestream';
import { type BoundedCache, cacheMetrics } from '@ferry/cache';
import { zstdAvailable, zstdCompress, zstdDecompress } from '@ferry/compression';
import { FerryError, InvalidArgumentError, NotFoundError, toWireError } from '@ferry/errors';
import type {
  ActionResult,
  ActionResult__Output,
  BatchReadBlobsRequest__Output,
  BatchReadBlobsResponse,
  BatchUpdateBlobsRequest__Output,
  BatchUpdateBlobsResponse,
  Directory,
  Directory__Output,
  FindMissingBlobsRequest__Output,
  FindMissingBlobsResponse,
  GetActionResultRequest__Output,
  GetTreeRequest__Output,
  GetTreeResponse,
  ReapiDigest__Output,
  ServerCapabilities,
  UpdateActionResultRequest__Output,
} from '@ferry/protocol';
import { messageCodec } from '@ferry/protocol';
import { SHA256_EMPTY } from '@ferry/storage';
import { type Digests, type UploadEngine, verifyContent } from '@ferry/uploads';
import { ActionCacheStore, MAX_ACTION_RESULT_BYTES } from './action-cache';

export interface ReapiOptions {
  instances: ReapiInstances;
  /** max_batch_total_size_bytes. */
  maxBatchBytes: number;
  /** max_cas_blob_size_bytes; 0: no limit. */
  maxBlobBytes: number;
  /** The bounded cache (FERRY_CACHE_MAX_BYTES): blobs used are touched, new ones admitted first. */
  cache?: BoundedCache;
}

/** A digest as Ferry uses it: lowercase SHA-256 hex and a size. */
export interface BlobDigest {
  hash: string;
  size: number;
}

const SHA256_HEX = /^[0-9a-f]{64}$/;
/** HTTP cache PUTs of a CAS blob up to this size are taken whole (one write); larger ones stream. */
export const HTTP_WHOLE_BODY_BYTES = 1024 * 1024;
const DEFAULT_TREE_PAGE = 1000;

/** google.rpc.Status of one blob in a batch. */
interface RpcStatus {
  code: number;
  message: string;
}

const OK: RpcStatus = { code: 0, message: '' };

function statusOf(err: unknown): RpcStatus {
  if (err instanceof FerryError) {
    const wire = toWireError(err);
    return { code: wire.grpc, message: wire.message };
  }
  throw err;
}

/**
 * The Remote Execution API cache services (Capabilities, ContentAddressableStorage, ActionCache)
 * over the upload engine's content-addressed storage, transport-free. Large blobs travel over
 * ByteStream (`[instance/]uploads/{uuid}/blobs/{hash}/{size}`), small ones in batches here; both
 * land as the same SHA-256 blobs and `blobs/{hash}/{size}` catalog objects, shared by every
 * instance. The action cache is namespaced by instance.
 *
 * Scopes, with `p` = the instance name and a slash (empty for the default instance):
 * `ferry:read:{p}blobs/...` and `ferry:write:{p}blobs/...` for the CAS,
 * `ferry:read:{p}actionResults/...` and `ferry:write:{p}actionResults/...` for the action cache
 * (`ferry:write:{p}*` grants everything a remote cache client does).
 */
export class ReapiService {
  private readonly directories = messageCodec<Directory, Directory__Output>('build.bazel.remote.execution.v2.Directory');

  constructor(
    private readonly engine: UploadEngine,
    private readonly auth: Authenticator,
    private readonly actionCache: ActionCacheStore,
    private readonly options: ReapiOptions,
  ) {}

  /**
   * GetCapabilities. `update_enabled` follows the caller's scopes. Without credentials (Bazel 2.x
   * sends none on this call, only on the cache calls that follow) it says whether any client may
   * update this instance's action cache; every update is still checked against its caller.
   */
  capabilities(principal: Principal | undefined, instanceName: string): ServerCapabilities {
    const { prefix } = this.scope(instanceName);
    const updateScope = Scopes.write(`${prefix}actionResults/*`);
    const updateEnabled = principal ? satisfiesScope(principal.scopes, updateScope) : this.auth.someClientHolds(updateScope);
    const version = (minor: number) => ({ major: 2, minor, patch: 0, prerelease: '' });
    return {
      cache_capabilities: {
        digest_functions: ['SHA256'],
        action_cache_update_capabilities: { update_enabled: updateEnabled },
        cache_priority_capabilities: { priorities: [{ min_priority: 0, max_priority: 0 }] },
        max_batch_total_size_bytes: this.options.maxBatchBytes,
        symlink_absolute_path_strategy: 'ALLOWED',
        // (zstd: ByteStream compressed-blobs names, and both batch calls; where the addon was built)
        supported_compressors: zstdAvailable() ? ['ZSTD'] : [],
        supported_batch_update_compressors: zstdAvailable() ? ['ZSTD'] : [],
        max_cas_blob_size_bytes: this.options.maxBlobBytes,
      },
      execution_capabilities: { digest_function: 'SHA256', exec_enabled: false, digest_functions: ['SHA256'] },
      deprecated_api_version: version(0),
      low_api_version: version(0),
      high_api_version: version(3),
    };
  }

  async findMissingBlobs(principal: Principal, req: FindMissingBlobsRequest__Output): Promise<FindMissingBlobsResponse> {
    const { prefix } = this.scope(req.instance_name, req.digest_function);
    this.auth.require(principal, Scopes.read(`${prefix}blobs/*`));
    const digests = req.blob_digests.map((d) => parseDigest(d));
    const present = await this.present(digests);
    return { missing_blob_digests: digests.filter((_, i) => !present[i]).map(wireDigest) };
  }

  async batchUpdateBlobs(principal: Principal, req: BatchUpdateBlobsRequest__Output): Promise<BatchUpdateBlobsResponse> {
    const { instance, prefix } = this.scope(req.instance_name, req.digest_function);
    // (the blobs' sizes, as REAPI counts them: a compressed blob is decompressed whole in memory)
    this.checkBatchSize(
      req.requests.reduce((n, r) => n + Math.max(r.data.length, r.compressor === 'IDENTITY' ? 0 : Number(r.digest?.size_bytes ?? 0)), 0),
    );
    const responses = await Promise.all(
      req.requests.map(async (r) => {
        const wire = r.digest ?? { hash: '', size_bytes: 0 };
        try {
          const digest = parseDigest(r.digest);
          this.auth.require(principal, Scopes.write(`${prefix}blobs/${digest.hash}/${digest.size}`));
          const zstd = r.compressor === 'ZSTD' && zstdAvailable();
          if (r.compressor !== 'IDENTITY' && !zstd) {
            throw new InvalidArgumentError(
              `compressor ${r.compressor} is not supported; send ${zstdAvailable() ? 'ZSTD or ' : ''}IDENTITY`,
            );
          }
          this.checkBlobSize(digest.size);
          if (!zstd && r.data.length !== digest.size) {
            throw new InvalidArgumentError(`blob ${digest.hash}: ${r.data.length} bytes sent, the digest declares ${digest.size}`);
          }
          if (await this.engine.hasBlob(digest.hash, digest.size)) {
            // in use again (an action result will name it): the bounded cache keeps it
            await this.options.cache?.index.touchBlobs([{ sha256: digest.hash, size: digest.size }]);
          } else {
            await this.options.cache?.admit(digest.size);
            // (decompressed only up to the declared size, and refused past it)
            const data = zstd ? zstdDecompress(r.data, digest.size) : r.data;
            await this.engine.publishWhole(data, { size: digest.size, sha256: digest.hash, declaredBy: 'the digest' }, (size, digests) =>
              casCatalogObject(digests, size, principal.clientId, instance, 'reapi-cas'),
            );
          }
          return { digest: wire, status: OK };
        } catch (err) {
          return { digest: wire, status: statusOf(err) };
        }
      }),
    );
    return { responses };
  }

  async batchReadBlobs(principal: Principal, req: BatchReadBlobsRequest__Output): Promise<BatchReadBlobsResponse> {
    const { prefix } = this.scope(req.instance_name, req.digest_function);
    const digests = req.digests.map((d) => parseDigest(d));
    this.checkBatchSize(digests.reduce((n, d) => n + d.size, 0));
    // zstd when the client accepts it (and it saves bytes); the blobs are stored uncompressed
    const zstd = zstdAvailable() && req.acceptable_compressors.includes('ZSTD');
    const responses = await Promise.all(
      digests.map(async (digest) => {
        try {
          this.auth.require(principal, Scopes.read(`${prefix}blobs/${digest.hash}/${digest.size}`));
          const data = await this.readBlob(digest);
          const compressed = zstd ? zstdCompress(data) : undefined;
          if (compressed && compressed.length < data.length)
            return { digest: wireDigest(digest), data: compressed, compressor: 'ZSTD' as const, status: OK };
          return { digest: wireDigest(digest), data, compressor: 'IDENTITY' as const, status: OK };
        } catch (err) {
          return { digest: wireDigest(digest), data: Buffer.alloc(0), compressor: 'IDENTITY' as const, status: statusOf(err) };
        }
      }),
    );
    return { responses };
  }

  /**
   * Every Directory reachable from the root, breadth first, in pages of `page_size` (default 1000);
   * the page token is the position of the page's first directory. A missing root is NOT_FOUND; a
   * missing or malformed directory below it ends the tree there (REAPI: the server may omit them).
   */
  async *getTree(principal: Principal, req: GetTreeRequest__Output): AsyncIterable<GetTreeResponse> {
    const { prefix } = this.scope(req.instance_name, req.digest_function);
    this.auth.require(principal, Scopes.read(`${prefix}blobs/*`));
    const root = parseDigest(req.root_digest);
    if (req.page_size < 0) throw new InvalidArgumentError(`page_size ${req.page_size} is negative`);
    const pageSize = req.page_size || DEFAULT_TREE_PAGE;
    const start = req.page_token ? Number(req.page_token) : 0;
    if (!Number.isSafeInteger(start) || start < 0)
      throw new InvalidArgumentError(`page_token ${JSON.stringify(req.page_token)} is not one Ferry gave`);
    if (!(await this.engine.hasBlob(root.hash, root.size))) throw new NotFoundError(`root directory ${root.hash}/${root.size} not found`);
    const queue: BlobDigest[] = [root];
    const seen = new Set<string>([`${root.hash}/${root.size}`]);
    let page: Directory__Output[] = [];
    for (let position = 0; position < queue.length; position++) {
      const directory = await this.readDirectory(queue[position]);
      if (!directory) continue;
      for (const child of directory.directories) {
        const digest = safeDigest(child.digest);
        const key = digest && `${digest.hash}/${digest.size}`;
        if (digest && key && !seen.has(key)) {
          seen.add(key);
          queue.push(digest);
        }
      }
      if (position < start) continue;
      page.push(directory);
      if (page.length === pageSize) {
        const more = position + 1 < queue.length;
        yield { directories: page, next_page_token: more ? String(position + 1) : '' };
        if (!more) return;
        page = [];
      }
    }
    yield { directories: page, next_page_token: '' };
  }

  async getActionResult(principal: Principal, req: GetActionResultRequest__Output): Promise<ActionResult__Output> {
    const { instance, prefix } = this.scope(req.instance_name, req.digest_function);
    const action = parseDigest(req.action_digest);
    this.auth.require(principal, Scopes.read(`${prefix}actionResults/${action.hash}/${action.size}`));
    return (await this.liveActionResult(instance, action.hash, `${action.hash}/${action.size}`)).result;
  }

  async updateActionResult(principal: Principal, req: UpdateActionResultRequest__Output): Promise<ActionResult> {
    const { instance, prefix } = this.scope(req.instance_name, req.digest_function);
    const action = parseDigest(req.action_digest);
    this.auth.require(principal, Scopes.write(`${prefix}actionResults/${action.hash}/${action.size}`));
    if (!req.action_result) throw new InvalidArgumentError('action_result is required');
    await this.storeActionResult(instance, action.hash, req.action_result);
    return req.action_result;
  }

  /**
   * The stored result of an action and its encoding; NOT_FOUND on a miss, and when the result
   * refers to blobs that are gone (the client would fail to fetch them: it runs the action instead).
   */
  private async liveActionResult(
    instance: string,
    hash: string,
    label: string,
  ): Promise<{ result: ActionResult__Output; encoded: Buffer }> {
    const encoded = await this.actionCache.getEncoded(instance, hash);
    if (!encoded) throw new NotFoundError(`no action result for ${label}`);
    const result = this.actionCache.decode(encoded);
    if ((await this.present(referencedBlobs(result))).some((present) => !present)) {
      throw new NotFoundError(`the action result for ${label} refers to blobs that are gone`);
    }
    return { result, encoded };
  }

  /** Checks a result (its output digests, its encoded size) and stores it as the action's. */
  private async storeActionResult(instance: string, hash: string, result: ActionResult): Promise<void> {
    referencedBlobs(result); // throws INVALID_ARGUMENT on a malformed output digest
    const encoded = this.actionCache.encode(result);
    if (encoded.length > MAX_ACTION_RESULT_BYTES) {
      throw new InvalidArgumentError(
        `action result of ${encoded.length} bytes exceeds ${MAX_ACTION_RESULT_BYTES}; keep outputs in the CAS`,
      );
    }
    await this.actionCache.put(instance, hash, encoded);
  }

  // Bazel's HTTP cache protocol: `[/{instance}]/ac/{hash}` and `[/{instance}]/cas/{hash}` over the
  // same action cache and CAS. HTTP names an action and a blob by hash alone, so reads (and action
  // result writes) need the scope of every size: `ferry:read:{p}blobs/{hash}/*`,
  // `ferry:read:{p}actionResults/{hash}/*`, `ferry:write:{p}actionResults/{hash}/*`; a CAS PUT
  // declares its size (Content-Length) and needs `ferry:write:{p}blobs/{hash}/{size}`, as
  // BatchUpdateBlobs.

  /**
   * GET / HEAD `/ac/{hash}`: the serialized ActionResult (what a PUT or UpdateActionResult stored;
   * Bazel's HTTP cache takes these bytes), NOT_FOUND as GetActionResult.
   */
  async httpGetActionResult(principal: Principal, instanceName: string, hash: string): Promise<Buffer> {
    const { instance, prefix } = this.scope(instanceName);
    this.auth.require(principal, Scopes.read(`${prefix}actionResults/${hash}/*`));
    return (await this.liveActionResult(instance, hash, hash)).encoded;
  }

  /**
   * PUT `/ac/{hash}`: `body` must be a serialized ActionResult of at most MAX_ACTION_RESULT_BYTES
   * (`length`: the declared Content-Length, refused before reading when too large); it is checked
   * as UpdateActionResult checks a result, and stored as that would store it.
   */
  async httpPutActionResult(
    principal: Principal,
    instanceName: string,
    hash: string,
    length: number | undefined,
    body: AsyncIterable<Buffer>,
  ): Promise<void> {
    const { instance, prefix } = this.scope(instanceName);
    this.auth.require(principal, Scopes.write(`${prefix}actionResults/${hash}/*`));
    const tooLarge = (size: number) =>
      new InvalidArgumentError(`action result of ${size} bytes exceeds ${MAX_ACTION_RESULT_BYTES}; keep outputs in the CAS`);
    if (length !== undefined && length > MAX_ACTION_RESULT_BYTES) throw tooLarge(length);
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of body) {
      size += chunk.length;
      if (size > MAX_ACTION_RESULT_BYTES) throw tooLarge(size);
      chunks.push(chunk);
    }
    await this.storeActionResult(instance, hash, this.actionCache.decode(Buffer.concat(chunks, size)));
  }

  /**
   * GET / HEAD `/cas/{hash}`: the blob's size and a reader of its bytes (opened only when called);
   * NOT_FOUND when absent. The empty blob always exists.
   */
  async httpCasBlob(principal: Principal, instanceName: string, hash: string): Promise<{ size: number; read(): Readable }> {
    const { prefix } = this.scope(instanceName);
    this.auth.require(principal, Scopes.read(`${prefix}blobs/${hash}/*`));
    const size = hash === SHA256_EMPTY ? 0 : await this.engine.blobSize(hash);
    if (size === undefined) {
      cacheMetrics.misses.inc({ kind: 'blob' });
      throw new NotFoundError(`blob ${hash} not found`);
    }
    cacheMetrics.hits.inc({ kind: 'blob' });
    await this.options.cache?.index.touchBlobs([{ sha256: hash, size }]);
    return { size, read: () => this.engine.readBlob(hash, 0, size) };
  }

  /**
   * PUT `/cas/{hash}` of `size` bytes (the Content-Length): the body is verified against the
   * hash and the size, and only then stored (nothing is kept on a mismatch or a body cut short);
   * published as the same blob and `blobs/{hash}/{size}` catalog object as a ByteStream upload or
   * BatchUpdateBlobs. Bodies up to HTTP_WHOLE_BODY_BYTES are taken whole; larger ones stream
   * through an upload session of their own (a PUT is not resumable: its session is dropped when it
   * fails, and the worker expires one left by a crash). A blob already stored is not written again,
   * but the body is still read and checked.
   */
  async httpPutCasBlob(principal: Principal, instanceName: string, hash: string, size: number, body: AsyncIterable<Buffer>): Promise<void> {
    const { instance, prefix } = this.scope(instanceName);
    if (!Number.isSafeInteger(size) || size < 0) throw new InvalidArgumentError(`Content-Length ${size} is invalid`);
    this.auth.require(principal, Scopes.write(`${prefix}blobs/${hash}/${size}`));
    this.checkBlobSize(size);
    const expect = { size, sha256: hash, declaredBy: 'the request' };
    const describe = (length: number, digests: Digests) => casCatalogObject(digests, length, principal.clientId, instance, 'http-cache');
    if (await this.engine.hasBlob(hash, size)) {
      const digest = createHash('sha256');
      let received = 0;
      for await (const chunk of body) {
        received += chunk.length;
        digest.update(chunk);
      }
      const mismatch = verifyContent(expect, received, { sha256: digest.digest('hex') });
      if (mismatch) throw new InvalidArgumentError(mismatch);
      await this.options.cache?.index.touchBlobs([{ sha256: hash, size }]);
      return;
    }
    await this.options.cache?.admit(size);
    if (size <= HTTP_WHOLE_BODY_BYTES) {
      const chunks: Buffer[] = [];
      let received = 0;
      for await (const chunk of body) {
        received += chunk.length;
        if (received > size) throw new InvalidArgumentError(`the body is longer than its Content-Length ${size}`);
        chunks.push(chunk);
      }
      await this.engine.publishWhole(Buffer.concat(chunks, received), expect, describe);
      return;
    }
    const id = `hc_${randomBytes(24).toString('base64url')}`;
    await this.engine.getOrCreateSession({
      id,
      name: `${prefix}cas/${hash}`,
      protocol: 'http-cache',
      owner: principal.clientId,
      attributes: { sha256: hash, size: String(size) },
    });
    const writer = await this.engine.openWriter(id);
    try {
      for await (const chunk of body) {
        if (writer.receivedSize + chunk.length > size) throw new InvalidArgumentError(`the body is longer than its Content-Length ${size}`);
        await writer.write(chunk);
      }
      await writer.finish(expect, describe);
    } catch (err) {
      await writer.abandon().catch(() => undefined); // a PUT cannot be resumed: keep nothing
      throw err;
    } finally {
      await writer.close();
    }
  }

  /**
   * The request's instance, checked with its digest function, and the scope prefix of its names:
   * `instance/` (or '' for the default instance).
   */
  private scope(instanceName: string, digestFunction: string | number = 'UNKNOWN'): { instance: string; prefix: string } {
    const instance = this.options.instances.check(instanceName);
    if (digestFunction !== 'UNKNOWN' && digestFunction !== 'SHA256' && digestFunction !== 0 && digestFunction !== 1) {
      throw new InvalidArgumentError(`digest function ${digestFunction} is not supported; Ferry stores SHA256`);
    }
    return { instance, prefix: instance ? `${instance}/` : '' };
  }

  private checkBatchSize(bytes: number): void {
    if (bytes > this.options.maxBatchBytes) {
      throw new InvalidArgumentError(
        `batch of ${bytes} bytes exceeds max_batch_total_size_bytes ${this.options.maxBatchBytes}; use ByteStream`,
      );
    }
  }

  private checkBlobSize(size: number): void {
    const max = this.options.maxBlobBytes;
    if (max > 0 && size > max) throw new InvalidArgumentError(`blob of ${size} bytes exceeds max_cas_blob_size_bytes ${max}`);
  }

  /**
   * Whether each blob is stored with its size (the empty blob always is). The present ones are the
   * most recently used entries of the bounded cache from now on (what a build asked for, or an
   * action result it was given, refers to: they are what it reads next).
   */
  private async present(digests: BlobDigest[]): Promise<boolean[]> {
    const out = await this.engine.hasBlobs(digests.map((d) => ({ sha256: d.hash, size: d.size })));
    const found = digests.filter((_, i) => out[i]);
    cacheMetrics.hits.inc({ kind: 'blob' }, found.length);
    cacheMetrics.misses.inc({ kind: 'blob' }, digests.length - found.length);
    await this.options.cache?.index.touchBlobs(found.map((d) => ({ sha256: d.hash, size: d.size })));
    return out;
  }

  private async readBlob(digest: BlobDigest): Promise<Buffer> {
    const missing = (cause?: unknown) => new NotFoundError(`blob ${digest.hash}/${digest.size} not found`, { cause });
    if (!(await this.engine.hasBlob(digest.hash, digest.size))) throw missing();
    await this.options.cache?.index.touchBlobs([{ sha256: digest.hash, size: digest.size }]);
    const chunks: Buffer[] = [];
    try {
      for await (const chunk of this.engine.readBlob(digest.hash, 0, digest.size)) chunks.push(chunk as Buffer);
    } catch (err) {
      // gone under the read: storage names it by its key, the client by its digest
      if (err instanceof NotFoundError) throw missing(err);
      throw err;
    }
    return Buffer.concat(chunks, digest.size);
  }

  private async readDirectory(digest: BlobDigest): Promise<Directory__Output | undefined> {
    try {
      return this.directories.decode(await this.readBlob(digest));
    } catch (err) {
      if (err instanceof NotFoundError || !(err instanceof FerryError)) return undefined;
      throw err;
    }
  }
}

/** A wire digest, checked: 64 lowercase hex digits (SHA-256) and a size ≥ 0; INVALID_ARGUMENT otherwise. */
export function parseDigest(d: ReapiDigest__Output | null | undefined): BlobDigest {
  if (!d) throw new InvalidArgumentError('digest is required');
  if (!SHA256_HEX.test(d.hash)) {
    throw new InvalidArgumentError(`digest hash ${JSON.stringify(d.hash)} is not a SHA-256 (64 lowercase hex digits)`);
  }
  if (!Number.isSafeInteger(d.size_bytes) || d.size_bytes < 0) throw new InvalidArgumentError(`digest size ${d.size_bytes} is invalid`);
  return { hash: d.hash, size: d.size_bytes };
}

function safeDigest(d: ReapiDigest__Output | null | undefined): BlobDigest | undefined {
  try {
    return parseDigest(d);
  } catch {
    return undefined;
  }
}

function wireDigest(d: BlobDigest): { hash: string; size_bytes: number } {
  return { hash: d.hash, size_bytes: d.size };
}

/** The CAS blobs an action result points at (outputs, trees, stdout, stderr), each checked. */
function referencedBlobs(result: ActionResult | ActionResult__Output): BlobDigest[] {
  const digests = [
    ...(result.output_files ?? []).map((f) => f.digest),
    ...(result.output_directories ?? []).map((d) => d.tree_digest),
    result.stdout_digest,
    result.stderr_digest,
  ];
  return digests
    .filter((d): d is ReapiDigest__Output => !!d && !!d.hash)
    .map((d) => parseDigest({ hash: d.hash, size_bytes: Number(d.size_bytes ?? 0) }));
}
