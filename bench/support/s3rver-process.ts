import { spawn } from "node:child_process";
import { createRequire } from "node:module";

/** s3rver's built-in account: the only key pair it accepts unless told otherwise. */
export const S3RVER_CREDENTIALS = { accessKeyId: "S3RVER", secretAccessKey: "S3RVER" };

export interface S3rverProcess {
  /** `http://127.0.0.1:<port>`. */
  endpoint: string;
  /** SIGTERM, then waits for its exit. Idempotent (a cleanup step may call it again). */
  stop(): Promise<void>;
}

/** s3rver in a child process of its own (the server's CPU is not the downloader's), on a free loopback port, its data in `dir`. */
export async function startS3rverProcess(dir: string): Promise<S3rverProcess> {
  const main = createRequire(import.meta.url).resolve("s3rver");
  const script = `const s = new (require(${JSON.stringify(main)}))({ address: "127.0.0.1", port: 0, silent: true, directory: ${JSON.stringify(dir)} }); s.run().then((a) => console.log("port " + a.port))`;
  const child = spawn(process.execPath, ["-e", script], { stdio: ["ignore", "pipe", "inherit"] });
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const port = await new Promise<number>((resolve, reject) => {
    child.stdout.on("data", (chunk: Buffer) => {
      const m = /port (\d+)/.exec(chunk.toString());
      if (m) resolve(Number(m[1]));
    });
    child.once("exit", (code) => reject(new Error(`s3rver exited with ${code}`)));
  });
  return {
    endpoint: `http://127.0.0.1:${port}`,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
      await exited;
    },
  };
}
