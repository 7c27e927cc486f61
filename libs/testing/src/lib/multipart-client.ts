import { createHash } from 'node:crypto';

/** A minimal client of Ferry's multipart REST API over real HTTP (fetch), as the Python client uses it. */
export interface MultipartClientOptions {
  base: string;
  token: string;
}

export interface HttpResult<T = unknown> {
  status: number;
  body: T;
  headers: Headers;
}

export function md5Hex(data: Buffer | string): string {
  return createHash('md5').update(data).digest('hex');
}

export class MultipartClient {
  constructor(readonly options: MultipartClientOptions) {}

  async request<T = Record<string, unknown>>(
    method: string,
    path: string,
    body?: unknown,
    headers: Record<string, string> = {},
  ): Promise<HttpResult<T>> {
    const res = await fetch(`${this.options.base}${path}`, {
      method,
      headers: {
        ...(this.options.token ? { authorization: `Bearer ${this.options.token}` } : {}),
        ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
        ...headers,
      },
      body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
      redirect: 'manual',
    });
    const text = await res.text();
    let parsed: unknown = text;
    if ((res.headers.get('content-type') ?? '').includes('json')) parsed = JSON.parse(text);
    return { status: res.status, body: parsed as T, headers: res.headers };
  }

  start(request: Record<string, unknown>, forceRestart?: boolean) {
    return this.request('POST', `/file/multipart${forceRestart === undefined ? '' : `?forceRestart=${forceRestart}`}`, request);
  }

  urls(uploadId: string, partNumbers: number[], extra: Record<string, unknown> = {}) {
    return this.request<{ partPresignedUrls: { partNumber: number; uploadPresignedUrl: string; signedHeaders: Record<string, string> }[] }>(
      'POST',
      `/file/multipart/${uploadId}/presigned/url/batch`,
      { uploadId, partNumbers, ...extra },
    );
  }

  add(uploadId: string, partNumber: number, md5: string) {
    return this.request('PUT', `/file/multipart/${uploadId}/add/${partNumber}?partMD5Hex=${md5}`);
  }

  complete(uploadId: string) {
    return this.request('PUT', `/file/multipart/${uploadId}/complete`);
  }

  status(uploadId: string) {
    return this.request('GET', `/file/multipart/${uploadId}`);
  }

  /** `{base}/fileHandle/{id}`, as Synapse clients call it from their file endpoint base. */
  fileHandle(id: string) {
    return this.request('GET', `/fileHandle/${id}`);
  }

  /** `{base}/fileHandle/{id}/url`: the signed URL as text (`redirect` false) or a 307 to it. */
  fileHandleUrl(id: string, redirect?: boolean) {
    return this.request('GET', `/fileHandle/${id}/url${redirect === undefined ? '' : `?redirect=${redirect}`}`);
  }

  /** PUTs bytes to a presigned URL (no bearer token: the signature is the credential). */
  static async put(url: string, data: Buffer, headers: Record<string, string> = {}): Promise<HttpResult> {
    const res = await fetch(url, { method: 'PUT', body: data, headers });
    const text = await res.text();
    return { status: res.status, body: text ? (JSON.parse(text) as unknown) : text, headers: res.headers };
  }

  /**
   * The Python client's cycle: start; unless COMPLETED, PUT and add every missing part
   * (`parallel` at a time), then complete (again while it answers 202). Returns the final status.
   */
  async upload(
    content: Buffer,
    request: { fileName: string; partSizeBytes: number; contentType?: string; contentMD5Hex?: string },
    parallel = 4,
  ) {
    const start = await this.start({
      fileName: request.fileName,
      contentType: request.contentType ?? 'application/octet-stream',
      contentMD5Hex: request.contentMD5Hex ?? md5Hex(content),
      fileSizeBytes: content.length,
      partSizeBytes: request.partSizeBytes,
    });
    if (start.status !== 201) throw new Error(`start: ${start.status} ${JSON.stringify(start.body)}`);
    const status = start.body as { uploadId: string; state: string; partsState: string };
    if (status.state === 'COMPLETED') return start;
    const missing = [...status.partsState].flatMap((c, i) => (c === '0' ? [i + 1] : []));
    const urls = missing.length ? (await this.urls(status.uploadId, missing)).body.partPresignedUrls : [];
    const queue = [...urls];
    await Promise.all(
      Array.from({ length: parallel }, async () => {
        for (let u = queue.shift(); u; u = queue.shift()) {
          const part = content.subarray((u.partNumber - 1) * request.partSizeBytes, u.partNumber * request.partSizeBytes);
          // a PUT whose lease lapsed (a starved server) answers 409 ABORTED: PUT the part again, as clients do
          let put = await MultipartClient.put(u.uploadPresignedUrl, part, u.signedHeaders);
          for (let retry = 0; retry < 3 && put.status === 409 && (put.body as { code?: string }).code === 'ABORTED'; retry++) {
            await new Promise((r) => setTimeout(r, 200));
            put = await MultipartClient.put(u.uploadPresignedUrl, part, u.signedHeaders);
          }
          if (put.status !== 200) throw new Error(`PUT part ${u.partNumber}: ${put.status} ${JSON.stringify(put.body)}`);
          const add = await this.add(status.uploadId, u.partNumber, md5Hex(part));
          if ((add.body as { addPartState?: string }).addPartState !== 'ADD_SUCCESS')
            throw new Error(`add ${u.partNumber}: ${JSON.stringify(add.body)}`);
        }
      }),
    );
    for (;;) {
      const done = await this.complete(status.uploadId);
      if (done.status !== 202) return done;
    }
  }
}
