import { createHash, randomBytes } from "node:crypto";
import { mkdir, open, readFile, rename, rm } from "node:fs/promises";
import { dirname, join } from "node:path";
import { assertObjectKey, type ObjectStore, type StoredObject } from "./object-store.ts";

/**
 * The object store without S3 (the `npm start` default): each object is the file `dir/<key>`.
 * Files are 0600 and directories 0700, as outputs are tenants' data. The content type is not kept:
 * what serves an object back gets it from the job's record.
 *
 * Unlike S3, a key cannot be both an object and a prefix of another (`a` and `a/b`): the second put
 * fails with the filesystem's error. Segments longer than the filesystem's name limit (255 bytes on
 * most) fail the same way.
 */
export class LocalObjectStore implements ObjectStore {
  readonly kind = "local" as const;

  constructor(private readonly dir: string) {}

  async put(key: string, body: Buffer, _contentType: string): Promise<StoredObject> {
    assertObjectKey(key);
    const file = join(this.dir, key);
    const parent = dirname(file);
    await mkdir(parent, { recursive: true, mode: 0o700 });
    // `~` cannot occur in a key, so a temp file is never read as an object, nor overwritten by one.
    const tmp = join(parent, `.tmp~${randomBytes(8).toString("hex")}`);
    try {
      const handle = await open(tmp, "wx", 0o600);
      try {
        await handle.writeFile(body);
        await handle.sync();
      } finally {
        await handle.close();
      }
      await rename(tmp, file);
    } catch (err) {
      await rm(tmp, { force: true });
      throw err;
    }
    // The record pointing at the object is written next: the rename must survive a power cut first.
    const dirHandle = await open(parent, "r");
    try {
      await dirHandle.sync();
    } finally {
      await dirHandle.close();
    }
    return { store: "local", key, bytes: body.length, sha256: createHash("sha256").update(body).digest("hex") };
  }

  async get(key: string): Promise<Buffer | undefined> {
    assertObjectKey(key);
    try {
      return await readFile(join(this.dir, key));
    } catch (err) {
      // ENOTDIR (`a/b` where `a` is an object) and EISDIR (`a` where only `a/b` is) are absent keys on S3 too.
      const code = (err as NodeJS.ErrnoException).code;
      if (code === "ENOENT" || code === "ENOTDIR" || code === "EISDIR") return undefined;
      throw err;
    }
  }
}
