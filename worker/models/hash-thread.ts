import { Worker } from "node:worker_threads";

/**
 * The thread's code, as a string: it runs with `eval`, so it needs no file of its own beside the
 * bundle (dist/ holds no .ts, and a worker thread cannot load one without tsx). It reads the file
 * up to each `upTo` it is sent, with positioned reads (the page cache, just written), and answers
 * `finish` with the digest.
 */
const CODE = `
const { parentPort, workerData } = require("node:worker_threads");
const { createHash } = require("node:crypto");
const fs = require("node:fs");
const fd = fs.openSync(workerData.file, "r");
const hash = createHash(workerData.algorithm);
const buf = Buffer.allocUnsafe(4 * 1024 * 1024);
let at = 0;
parentPort.on("message", (m) => {
  try {
    while (at < m.upTo) {
      const n = fs.readSync(fd, buf, 0, Math.min(buf.length, m.upTo - at), at);
      if (n === 0) throw new Error("read nothing at " + at);
      hash.update(buf.subarray(0, n));
      at += n;
    }
    if (m.finish) {
      fs.closeSync(fd);
      parentPort.postMessage({ digest: hash.digest("hex"), at });
    }
  } catch (err) {
    parentPort.postMessage({ error: String(err && err.message || err) });
  }
});
`;

/**
 * Hashes a file on another thread while it is being written: `advance(upTo)` says the bytes before
 * `upTo` are final, `finish(size)` returns the digest of exactly `size` bytes. Keeps a hash that
 * costs as much CPU as the download itself off the thread that drives the sockets.
 */
export class HashThread {
  private readonly worker: Worker;
  private readonly result: Promise<string>;
  private posted = 0;

  constructor(file: string, algorithm: "sha256" | "md5") {
    this.worker = new Worker(CODE, { eval: true, workerData: { file, algorithm } });
    this.result = new Promise<string>((resolve, reject) => {
      this.worker.on("message", (m: { digest?: string; at?: number; error?: string }) => {
        if (m.error !== undefined) reject(new Error(`hashing failed: ${m.error}`));
        else if (m.digest !== undefined) resolve(m.digest);
      });
      this.worker.once("error", reject);
      this.worker.once("exit", (code) => reject(new Error(`hash thread exited (${code})`)));
    });
    this.result.catch(() => undefined); // observed by finish(); a thread that fails early must not crash the process
  }

  advance(upTo: number): void {
    if (upTo <= this.posted) return;
    this.posted = upTo;
    this.worker.postMessage({ upTo });
  }

  async finish(size: number): Promise<string> {
    this.worker.postMessage({ upTo: size, finish: true });
    try {
      return await this.result;
    } finally {
      await this.worker.terminate();
    }
  }

  async abandon(): Promise<void> {
    await this.worker.terminate();
  }
}
