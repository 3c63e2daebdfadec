import { describe, expect, it } from "vitest";
import { FifoPool } from "./fifo-pool.ts";

describe("FifoPool", () => {
  it("lends free items, then serves waiters in arrival order as items come back", async () => {
    const pool = new FifoPool(["s0", "s1"]);
    const a = await pool.acquire();
    const b = await pool.acquire();
    expect(new Set([a, b])).toEqual(new Set(["s0", "s1"]));
    const order: string[] = [];
    const waiting = ["w1", "w2", "w3"].map((w) => pool.acquire().then((item) => (order.push(w), item)));
    expect(pool).toMatchObject({ inUse: 2, waiting: 3 });
    pool.release(a);
    pool.release(b);
    await Promise.all(waiting.slice(0, 2));
    expect(order).toEqual(["w1", "w2"]);
    pool.release(await waiting[0]!);
    expect(await waiting[2]).toBe(a);
    expect(order).toEqual(["w1", "w2", "w3"]);
  });

  it("drops a waiter whose signal aborts, without giving it an item", async () => {
    const pool = new FifoPool(["only"]);
    const held = await pool.acquire();
    const controller = new AbortController();
    const leaving = pool.acquire(controller.signal);
    const staying = pool.acquire();
    controller.abort(new Error("client left"));
    await expect(leaving).rejects.toThrow("client left");
    expect(pool.waiting).toBe(1);
    pool.release(held);
    expect(await staying).toBe("only");
  });

  it("picks the best-ranked free item", async () => {
    const pool = new FifoPool([1, 5, 3]);
    expect(await pool.acquire(undefined, (n) => n)).toBe(5);
    expect(await pool.acquire(undefined, (n) => -n)).toBe(1);
  });

  it("rejects waiters and later callers once closed", async () => {
    const pool = new FifoPool(["x"]);
    await pool.acquire();
    const waiter = pool.acquire();
    pool.close(new Error("closing"));
    await expect(waiter).rejects.toThrow("closing");
    await expect(pool.acquire()).rejects.toThrow("closing");
  });
});
