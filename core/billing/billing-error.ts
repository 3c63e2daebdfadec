/**
 * Metering cannot produce a correct amount: the caller must not write a charge and should set the
 * session aside (dead letter, alert) rather than bill a guess.
 *
 * - `UNPRICED_GPU_TYPE`: a billable second falls where the price table has no price for the
 *   session's GPU type (a type the admin never priced, or priced only later).
 * - `AMOUNT_OVERFLOW`: an amount in micro-dollars would leave the safe-integer range.
 */
export class BillingError extends Error {
  constructor(
    readonly code: "UNPRICED_GPU_TYPE" | "AMOUNT_OVERFLOW",
    message: string,
  ) {
    super(message);
    this.name = "BillingError";
  }
}
