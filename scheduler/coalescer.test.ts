import { describe, expect, it } from "vitest";
import { Coalescer } from "./coalescer.ts";

function gate() {
  let open!: () => void;
  const opened = new Promise<void>((r) => (open = r));
  return { open, opened };
}

describe("Coalescer", () => {
  it("never runs one key twice at once, owes one rerun for any number of calls meanwhile, with the latest argument", async () => {
    const calls: string[] = [];
    let active = 0;
    let maxActive = 0;
    const first = gate();
    const c = new Coalescer<string>(async (key, arg) => {
      active++;
      maxActive = Math.max(maxActive, active);
      calls.push(`${key}:${arg}`);
      if (calls.length === 1) await first.opened;
      active--;
    });

    const p1 = c.run("ep", "a");
    const p2 = c.run("ep", "b");
    const p3 = c.run("ep", "c");
    first.open();
    await Promise.all([p1, p2, p3]);
    expect(calls).toEqual(["ep:a", "ep:c"]);
    expect(maxActive).toBe(1);

    await c.run("ep", "d");
    expect(calls).toEqual(["ep:a", "ep:c", "ep:d"]);
  });

  it("runs different keys side by side", async () => {
    const started: string[] = [];
    const g = gate();
    const c = new Coalescer<undefined>(async (key) => {
      started.push(key);
      await g.opened;
    });
    const all = Promise.all([c.run("x", undefined), c.run("y", undefined)]);
    await Promise.resolve();
    expect(started).toEqual(["x", "y"]);
    g.open();
    await all;
    await c.idle();
  });

  it("frees the key after a failed run", async () => {
    let fail = true;
    const c = new Coalescer<undefined>(async () => {
      if (fail) throw new Error("boom");
    });
    await expect(c.run("k", undefined)).rejects.toThrow("boom");
    fail = false;
    await expect(c.run("k", undefined)).resolves.toBeUndefined();
  });
});
