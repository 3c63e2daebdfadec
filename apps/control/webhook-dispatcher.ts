import type { Sql } from "postgres";
import { z } from "zod";
import { toPgText } from "../../core/db/pg-text.ts";
import type { WebhookSecretStore } from "../../core/db/webhook-secrets.ts";
import { errorFields, type Log } from "../../core/log/process-log.ts";
import { nextAttemptDelayMs } from "../../core/webhooks/retry-schedule.ts";
import type { ControlMetrics } from "./control-metrics.ts";
import type { AttemptOutcome, WebhookSender } from "./webhook-sender.ts";

export interface WebhookDispatcherOptions {
  sql: Sql;
  sender: Pick<WebhookSender, "send">;
  secrets: WebhookSecretStore;
  /** Delays in seconds before each attempt (HEARTH_WEBHOOK_RETRY_SCHEDULE). */
  scheduleS: readonly number[];
  log: Log;
  /** Deliveries in flight at once. Default 16. */
  concurrency?: number;
  /** How often due deliveries are looked for when nothing wakes the dispatcher (ms). Default 500. */
  pollMs?: number;
  /**
   * A claimed attempt not finished within this is taken again by the next claim (its deliverer
   * died): longer than any attempt (15 s). Default 60000.
   */
  leaseMs?: number;
  random?: () => number;
  /** Counts and times each attempt by outcome. */
  metrics?: Pick<ControlMetrics, "webhookAttempt">;
}

const claimedRow = z.object({
  id: z.string(),
  endpoint_id: z.string(),
  url: z.string(),
  payload: z.string(),
  attempts: z.number().int(),
  schedule_offset: z.number().int(),
  created_at: z.coerce.date(),
});
type Claimed = z.infer<typeof claimedRow>;

/**
 * Sends due webhook deliveries (`webhook_deliveries`), at most `concurrency` at once. An attempt is
 * claimed before it is sent (its number taken, a lease set, an `in_flight` row written), so a
 * deliverer that dies mid-attempt leaves the delivery to be taken again after the lease, as the
 * next attempt under the same `webhook-id` (receivers deduplicate on it): nothing is lost, and no
 * attempt number is sent twice. Outcomes follow the retry schedule (core/webhooks/retry-schedule.ts).
 */
export class WebhookDispatcher {
  private running: Promise<void> | undefined;
  private stopping = false;
  private wakeUp: (() => void) | undefined;
  private woken = false;
  private readonly inFlight = new Set<Promise<void>>();
  private readonly concurrency: number;

  constructor(private readonly options: WebhookDispatcherOptions) {
    this.concurrency = options.concurrency ?? 16;
  }

  start(): void {
    this.running ??= this.loop();
  }

  /** Looks for due deliveries now (a consumer just created some). */
  wake(): void {
    this.woken = true;
    this.wakeUp?.();
  }

  /** Stops claiming; attempts in flight finish (each bounded by the sender's timeout). */
  async stop(): Promise<void> {
    this.stopping = true;
    this.wakeUp?.();
    await this.running;
    await Promise.all(this.inFlight);
  }

  private async loop(): Promise<void> {
    while (!this.stopping) {
      let claimed = 0;
      try {
        const room = this.concurrency - this.inFlight.size;
        if (room > 0) {
          this.woken = false;
          const due = await this.claim(room);
          claimed = due.length;
          for (const d of due) {
            const p = this.attempt(d).finally(() => {
              this.inFlight.delete(p);
              this.wake();
            });
            this.inFlight.add(p);
          }
        }
      } catch (err) {
        this.options.log({ level: "warn", msg: "webhook claim failed; retrying", ...errorFields(err) });
      }
      if (this.stopping) break;
      // A full claim may leave more due: look again at once while there is room.
      if (claimed > 0 && this.inFlight.size < this.concurrency) continue;
      if (this.woken) continue;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, this.options.pollMs ?? 500);
        this.wakeUp = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.wakeUp = undefined;
    }
  }

  /** Takes up to `n` due deliveries: their next attempt numbers, leases and `in_flight` rows, in one transaction. */
  private async claim(n: number): Promise<Claimed[]> {
    const { sql } = this.options;
    const leaseMs = this.options.leaseMs ?? 60_000;
    return sql.begin(async (tx) => {
      const rows = z.array(claimedRow).parse(
        await tx`
          with due as (
            select id from webhook_deliveries
            where state = 'pending' and next_attempt_at <= now()
            order by next_attempt_at limit ${n}
            for update skip locked
          )
          update webhook_deliveries d set attempts = d.attempts + 1, next_attempt_at = now() + ${`${leaseMs} milliseconds`}::interval
          from due where d.id = due.id
          returning d.id, d.endpoint_id, d.url, d.payload, d.attempts, d.schedule_offset, d.created_at`,
      );
      for (const r of rows) {
        // An attempt a dead deliverer left in flight is reported as interrupted.
        await tx`update webhook_attempts set outcome = 'interrupted' where delivery_id = ${r.id} and outcome = 'in_flight'`;
        await tx`insert into webhook_attempts (delivery_id, attempt, outcome) values (${r.id}, ${r.attempts}, 'in_flight') on conflict do nothing`;
      }
      return rows;
    });
  }

  private async attempt(d: Claimed): Promise<void> {
    const { sql, log } = this.options;
    let outcome: AttemptOutcome;
    try {
      const secrets = await this.options.secrets.signing(d.endpoint_id, (err) =>
        log({ level: "warn", msg: "webhook secret unopenable", endpointId: d.endpoint_id, ...errorFields(err) }),
      );
      outcome = await this.options.sender.send({ url: d.url, webhookId: d.id, body: d.payload, secrets, timestampMs: Date.now() });
    } catch (err) {
      outcome = { kind: "retry", latencyMs: 0, error: `delivery failed before sending: ${errorFields(err).error}` };
    }
    this.options.metrics?.webhookAttempt(outcome.kind, outcome.latencyMs);
    const error = "error" in outcome ? toPgText(outcome.error.slice(0, 2000)).text : null;
    const status = outcome.status ?? null;
    let state: "pending" | "delivered" | "failed" | "exhausted" = outcome.kind === "delivered" ? "delivered" : outcome.kind === "stop" ? "failed" : "pending";
    let delayMs: number | undefined;
    if (outcome.kind === "retry") {
      delayMs = nextAttemptDelayMs([...this.options.scheduleS], d.attempts - d.schedule_offset, outcome.retryAfterMs, this.options.random ?? Math.random);
      if (delayMs === undefined) state = "exhausted";
    }
    try {
      await sql.begin(async (tx) => {
        await tx`update webhook_attempts set outcome = ${outcome.kind}, status = ${status}, latency_ms = ${Math.round(outcome.latencyMs)}, error = ${error}
                 where delivery_id = ${d.id} and attempt = ${d.attempts}`;
        await tx`
          update webhook_deliveries set state = ${state}, last_status = ${status}, last_error = ${error},
            delivered_at = case when ${state === "delivered"} then now() else delivered_at end,
            next_attempt_at = case when ${delayMs !== undefined} then now() + ${`${delayMs ?? 0} milliseconds`}::interval else null end
          where id = ${d.id} and attempts = ${d.attempts}`;
      });
    } catch (err) {
      // The lease runs out and the delivery is taken again: one more attempt, never a lost one.
      log({ level: "warn", msg: "webhook outcome not recorded", deliveryId: d.id, attempt: d.attempts, ...errorFields(err) });
    }
    if (state !== "delivered" && state !== "pending") log({ level: "warn", msg: `webhook ${state}`, deliveryId: d.id, attempts: d.attempts, status, error });
  }
}
