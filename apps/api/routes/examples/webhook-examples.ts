import type { z } from "zod";
import type { deliveryView, receiverHealthView } from "../../services/webhook-deliveries.ts";
import { ENDPOINT_ID } from "./example-ids.ts";

/*
 * Examples of webhook deliveries: the job's one delivery, refused once by its receiver (503, retried)
 * and delivered on the second attempt under the same `webhook-id`.
 */

const url = "https://hooks.acme.example/hearth";

export const deliveryExample: z.input<typeof deliveryView> = {
  id: "msg_ca2a0dafbd1076a04e6cbc56350a93c0",
  field: "webhook",
  url,
  state: "delivered",
  attempts: [
    { attempt: 1, at: "2025-06-04T14:22:07.512Z", outcome: "retry", status: 503, latencyMs: 184, error: "HTTP 503" },
    { attempt: 2, at: "2025-06-04T14:22:17.530Z", outcome: "delivered", status: 200, latencyMs: 41, error: null },
  ],
  nextAttemptAt: null,
  deliveredAt: "2025-06-04T14:22:17.571Z",
  createdAt: "2025-06-04T14:22:07.431Z",
};

const refused = (attempt: number, at: string) => ({ attempt, at, outcome: "retry", status: null, latencyMs: 3, error: "ECONNREFUSED: connect ECONNREFUSED 198.51.100.7:443" });

/** After `/deliveries/retry` of a delivery whose three attempts found its receiver down: pending again, due now. */
export const retriedDelivery: z.input<typeof deliveryView> = {
  ...deliveryExample,
  state: "pending",
  attempts: [refused(1, "2025-06-04T14:22:07.512Z"), refused(2, "2025-06-04T14:22:17.530Z"), refused(3, "2025-06-04T14:22:27.544Z")],
  nextAttemptAt: "2025-06-04T16:05:12.004Z",
  deliveredAt: null,
};

/** The new secret; the previous one keeps signing beside it until `previousExpiresAt`. */
export const rotatedSecret = { webhookSecret: "whsec_RiU1ehlvE43qCxGpdJhsS/PeTi4DTMwE", previousExpiresAt: "2025-06-05T16:05:12.004Z" };

export const receiverHealthExample: z.input<typeof receiverHealthView> = {
  endpointId: ENDPOINT_ID,
  lastSuccessAt: "2025-06-04T14:22:17.530Z",
  failuresInARow: 0,
  pending: 0,
  failed: 0,
  exhausted: 1,
};
