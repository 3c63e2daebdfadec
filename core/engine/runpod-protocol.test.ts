import { describe, expect, it } from "vitest";
import { envNameProblem } from "../contracts/endpoint-env.ts";
import { runpodEngine } from "../contracts/endpoint.ts";
import { meaningOf, pingedJobIds, runpodWorkerEnv, unpackError } from "./runpod-protocol.ts";

describe("RunPod worker protocol", () => {
  it("injects URL templates with the SDK's placeholders and a `?` to append to", () => {
    const env = runpodWorkerEnv({ gatewayOrigin: "http://127.0.0.1:4000", endpointId: "ep 1", workerId: "w1", token: "t", pingIntervalMs: 2000, gpu: "cpu", hostname: "h", withoutGpu: true });
    expect(env.RUNPOD_WEBHOOK_GET_JOB).toBe("http://127.0.0.1:4000/v2/ep%201/job-take/$ID?gpu=cpu");
    expect(env.RUNPOD_WEBHOOK_POST_OUTPUT).toBe("http://127.0.0.1:4000/v2/ep%201/job-done/$RUNPOD_POD_ID/$ID?gpu=cpu");
    expect(env.RUNPOD_WEBHOOK_POST_STREAM).toBe("http://127.0.0.1:4000/v2/ep%201/job-stream/$RUNPOD_POD_ID/$ID?gpu=cpu");
    expect(env.RUNPOD_WEBHOOK_PING).toBe("http://127.0.0.1:4000/v2/ep%201/ping/$RUNPOD_POD_ID?gpu=cpu");
    expect(env).toMatchObject({ RUNPOD_AI_API_KEY: "t", RUNPOD_POD_ID: "w1", RUNPOD_ENDPOINT_ID: "ep 1", RUNPOD_PING_INTERVAL: "2000", RUNPOD_SKIP_GPU_CHECK: "true" });
    // Every injected name is one an endpoint may not set.
    for (const name of Object.keys(env)) expect(envNameProblem(name, true)).toMatch(/set by the platform/);
  });

  it("lets a RunPod worker's endpoint set the SDK's other settings, and no other endpoint", () => {
    expect(envNameProblem("RUNPOD_SKIP_AUTO_SYSTEM_CHECKS", true)).toBeUndefined();
    expect(envNameProblem("RUNPOD_SKIP_AUTO_SYSTEM_CHECKS", false)).toMatch(/reserved/);
    expect(envNameProblem("RUNPOD_WEBHOOK_ANYTHING", true)).toMatch(/set by the platform/);
    expect(envNameProblem("HEARTH_X", true)).toMatch(/reserved/);
    expect(envNameProblem("REDIS_URL", true)).toMatch(/set by the platform/);
    const refused = runpodEngine.safeParse({ kind: "runpod", command: ["python3"], cwd: "/w", env: { RUNPOD_AI_API_KEY: "mine" } });
    expect(refused.success).toBe(false);
    expect(refused.error?.issues[0]?.path).toEqual(["env", "RUNPOD_AI_API_KEY"]);
    const parsed = runpodEngine.parse({ kind: "runpod", command: ["python3", "-u", "handler.py"], cwd: "/w", env: { RUNPOD_SKIP_AUTO_SYSTEM_CHECKS: "true" } });
    expect(parsed.concurrency).toBe(1);
    expect(runpodEngine.safeParse({ kind: "runpod", command: ["py\u0000"], cwd: "/w" }).success).toBe(false);
    expect(runpodEngine.safeParse({ kind: "runpod", command: [], cwd: "/w" }).success).toBe(false);
  });

  it("reads job-done bodies as the SDK sends them", () => {
    expect(meaningOf({ status: "IN_PROGRESS", output: 1 })).toEqual({ kind: "progress", output: 1 });
    expect(meaningOf({ output: { a: 1 } })).toEqual({ kind: "completed", output: { a: 1 }, stopPod: false });
    expect(meaningOf({})).toEqual({ kind: "completed", output: undefined, stopPod: false });
    expect(meaningOf({ output: 1, stopPod: true })).toMatchObject({ kind: "completed", stopPod: true });
    expect(meaningOf({ output: { p: 1 }, error: "bad" })).toEqual({ kind: "failed", error: "bad", output: { p: 1 }, stopPod: false });
    expect(meaningOf({ error: { code: 3 } })).toMatchObject({ kind: "failed", error: '{"code":3}' });
  });

  it("unpacks the SDK's JSON-string error of a handler that raised", () => {
    const raised = JSON.stringify({ error_type: "<class 'KeyError'>", error_message: "'x'", error_traceback: "Traceback (most recent call last):\n...", hostname: "h", worker_id: "w", runpod_version: "1.12.0" });
    expect(unpackError(raised)).toEqual({ message: "KeyError: 'x'", traceback: "Traceback (most recent call last):\n..." });
    expect(unpackError("plain words")).toEqual({ message: "plain words" });
    expect(unpackError('{"other": 1}')).toEqual({ message: '{"other": 1}' });
    expect(pingedJobIds("a,b,,c")).toEqual(["a", "b", "c"]);
    expect(pingedJobIds(null)).toEqual([]);
  });
});
