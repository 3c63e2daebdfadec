import { createHash, type Hash } from "node:crypto";
import { inputGrant, multipartGrant, partsGrant, putGrant, type MultipartGrant, type OffloadedOutput } from "../../core/contracts/offload.ts";
import { OffloadError, type OffloadClient } from "./offload-client.ts";
import { presignedRequest, type PresignedResponse } from "./presigned-http.ts";

/** S3's least part size (every part but the last): the memory one aggregated output holds at most. */
export const PART_BYTES = 5 * 1024 * 1024;
/** The largest `inputRef` object a worker reads into memory. */
export const INPUT_REF_MAX_BYTES = 256 * 1024 * 1024;

export interface JobOffloadOptions {
  client: OffloadClient;
  jobId: string;
  /** Values whose JSON is longer go to the bucket (the job's `offloadBytes`). */
  thresholdBytes: number;
  /** One line per part uploaded and per object finished. */
  onProgress?: (detail: { jobId: string; name: string; bytes: number; parts?: number; done: boolean }) => void;
}

/**
 * One job's traffic with its bucket, through presigned URLs the control plane grants
 * (OffloadClient): values and stream chunks over the threshold are PUT whole and replaced by their
 * `outputRef`; a generator's aggregated output is uploaded part by part as it grows; an `inputRef`
 * is fetched. Every failure is an OffloadError, which fails the job: never COMPLETED without its output.
 */
export class JobOffload {
  constructor(private readonly options: JobOffloadOptions) {}

  /** `value` as the job should report it: itself, or its `outputRef` once uploaded. */
  async value(value: unknown, name = "output.json"): Promise<unknown> {
    if (value === undefined) return value;
    const text = JSON.stringify(value);
    if (Buffer.byteLength(text) <= this.options.thresholdBytes) return value;
    return this.putWhole(name, Buffer.from(text));
  }

  /** Stream chunk `n` (0-based) as the stream should carry it. */
  chunk(n: number, chunk: unknown): Promise<unknown> {
    return this.value(chunk, `chunk-${n}.json`);
  }

  aggregate(): AggregateUpload {
    return new AggregateUpload(this.options);
  }

  /** The job's `inputRef` object, parsed as JSON. */
  async input(): Promise<unknown> {
    const { client, jobId } = this.options;
    const grant = await client.ask({ kind: "input", jobId }, inputGrant);
    const res = await send("GET", grant.url, { maxBodyBytes: INPUT_REF_MAX_BYTES }, `reading ${grant.uri}`);
    if (!ok(res)) throw new OffloadError(`reading ${grant.uri}: ${s3Error(res)}`);
    try {
      return JSON.parse(res.body.toString("utf8"));
    } catch {
      throw new OffloadError(`${grant.uri} is not JSON`);
    }
  }

  private async putWhole(name: string, body: Buffer): Promise<OffloadedOutput> {
    const { client, jobId } = this.options;
    const grant = await client.ask({ kind: "put", jobId, name }, putGrant);
    const res = await send("PUT", grant.putUrl, { body, headers: { "content-type": "application/json" } }, `uploading ${name}`);
    if (!ok(res)) throw new OffloadError(`uploading ${name} to ${grant.target.bucket}: ${s3Error(res)}`);
    this.options.onProgress?.({ jobId, name, bytes: body.length, done: true });
    return { outputRef: { ...grant.target, bytes: body.length, sha256: createHash("sha256").update(body).digest("hex") } };
  }
}

interface Multipart {
  grant: MultipartGrant;
  urls: Map<number, string>;
  etags: string[];
  buffer: Buffer;
  used: number;
  hash: Hash;
  bytes: number;
}

/**
 * A generator's output, the JSON array of its chunks, held in memory while it is small and, once
 * its JSON passes the threshold, written to a multipart upload in parts of PART_BYTES: memory stays
 * at one part however long the stream.
 */
export class AggregateUpload {
  private values: unknown[] = [];
  private inlineBytes = 2; // "[]"
  private upload: Multipart | undefined;
  private failed = false;
  private readonly name = "output.json";

  constructor(private readonly options: JobOffloadOptions) {}

  /** Adds one chunk; returns a promise (to await before the next) only when it uploads. */
  add(value: unknown): Promise<void> | undefined {
    if (this.failed) throw new OffloadError("the output upload failed earlier");
    const text = JSON.stringify(value) ?? "null"; // as JSON.stringify renders undefined inside an array
    if (!this.upload) {
      this.values.push(value);
      this.inlineBytes += Buffer.byteLength(text) + 1;
      return this.inlineBytes <= this.options.thresholdBytes ? undefined : this.guard(this.spill());
    }
    return this.write(`,${text}`);
  }

  /** The output to report: the chunks themselves, or the uploaded array's `outputRef`. */
  async finish(): Promise<unknown> {
    const up = this.upload;
    if (!up) return this.values;
    await this.guard(this.write("]") ?? Promise.resolve());
    return this.guard(this.complete(up));
  }

  /** Gives up the upload (a cancel, a failure): the bucket keeps no parts. */
  async abort(): Promise<void> {
    const up = this.upload;
    this.upload = undefined;
    this.failed = true;
    if (up) await presignedRequest("DELETE", up.grant.abortUrl).catch(() => {});
  }

  private async guard<T>(p: Promise<T>): Promise<T> {
    try {
      return await p;
    } catch (err) {
      await this.abort();
      throw err;
    }
  }

  private async spill(): Promise<void> {
    const { client, jobId } = this.options;
    const grant = await client.ask({ kind: "multipart", jobId, name: this.name }, multipartGrant);
    this.upload = {
      grant,
      urls: new Map(grant.partUrls.map((p) => [p.partNumber, p.url])),
      etags: [],
      buffer: Buffer.allocUnsafe(PART_BYTES),
      used: 0,
      hash: createHash("sha256"),
      bytes: 0,
    };
    const held = this.values;
    this.values = [];
    await (this.write(`[${held.map((v) => JSON.stringify(v) ?? "null").join(",")}`) ?? Promise.resolve());
  }

  /** Copies `text` into the part buffer, uploading each part that fills; synchronous unless one does. */
  private write(text: string): Promise<void> | undefined {
    const up = this.upload!;
    const data = Buffer.from(text);
    up.hash.update(data);
    up.bytes += data.length;
    if (up.used + data.length < up.buffer.length) {
      up.used += data.copy(up.buffer, up.used);
      return undefined;
    }
    return this.guard(this.fill(up, data));
  }

  private async fill(up: Multipart, data: Buffer): Promise<void> {
    let rest = data;
    while (rest.length > 0) {
      const n = rest.copy(up.buffer, up.used);
      up.used += n;
      rest = rest.subarray(n);
      if (up.used === up.buffer.length) await this.sendPart(up);
    }
  }

  private async sendPart(up: Multipart): Promise<void> {
    const { client, jobId } = this.options;
    const partNumber = up.etags.length + 1;
    let url = up.urls.get(partNumber);
    if (url === undefined) {
      const more = await client.ask({ kind: "parts", jobId, name: this.name, uploadId: up.grant.uploadId, from: partNumber, count: 16 }, partsGrant);
      for (const p of more.partUrls) up.urls.set(p.partNumber, p.url);
      url = up.urls.get(partNumber);
      if (url === undefined) throw new OffloadError(`no URL for part ${partNumber}`);
    }
    const res = await send("PUT", url, { body: up.buffer.subarray(0, up.used) }, `uploading part ${partNumber}`);
    const etag = res.headers.etag;
    if (!ok(res) || etag === undefined) throw new OffloadError(`uploading part ${partNumber} to ${up.grant.target.bucket}: ${ok(res) ? "no ETag in the answer" : s3Error(res)}`);
    up.etags.push(etag);
    up.urls.delete(partNumber);
    up.used = 0;
    this.options.onProgress?.({ jobId, name: this.name, bytes: up.bytes, parts: up.etags.length, done: false });
  }

  private async complete(up: Multipart): Promise<OffloadedOutput> {
    if (up.used > 0 || up.etags.length === 0) await this.sendPart(up);
    const xml = `<CompleteMultipartUpload>${up.etags.map((e, i) => `<Part><PartNumber>${i + 1}</PartNumber><ETag>${escapeXml(e)}</ETag></Part>`).join("")}</CompleteMultipartUpload>`;
    const res = await send("POST", up.grant.completeUrl, { body: Buffer.from(xml), headers: { "content-type": "application/xml" } }, "completing the upload");
    const text = res.body.toString("utf8");
    // S3 may answer 200 and put the error in the body (CompleteMultipartUpload's documented quirk).
    if (!ok(res) || text.includes("<Error>")) throw new OffloadError(`completing the upload to ${up.grant.target.bucket}: ${errorFromXml(text) ?? `HTTP ${res.status}`}`);
    this.upload = undefined;
    const sha256 = up.hash.digest("hex");
    this.options.onProgress?.({ jobId: this.options.jobId, name: this.name, bytes: up.bytes, parts: up.etags.length, done: true });
    return { outputRef: { ...up.grant.target, bytes: up.bytes, sha256 } };
  }
}

async function send(method: Parameters<typeof presignedRequest>[0], url: string, options: Parameters<typeof presignedRequest>[2], what: string): Promise<PresignedResponse> {
  try {
    return await presignedRequest(method, url, options);
  } catch (err) {
    throw new OffloadError(`${what}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}

function ok(res: PresignedResponse): boolean {
  return res.status >= 200 && res.status < 300;
}

/** `HTTP 404 NoSuchBucket: The specified bucket does not exist` from S3's XML error body. */
function s3Error(res: PresignedResponse): string {
  const detail = errorFromXml(res.body.toString("utf8"));
  return `HTTP ${res.status}${detail ? ` ${detail}` : ""}`;
}

function errorFromXml(text: string): string | undefined {
  const code = /<Code>([^<]{1,100})<\/Code>/.exec(text)?.[1];
  const message = /<Message>([^<]{1,300})<\/Message>/.exec(text)?.[1];
  if (!code) return undefined;
  return message ? `${code}: ${message}` : code;
}

function escapeXml(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
}
