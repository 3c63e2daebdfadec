/** A broker's refusal the worker may see: it says what is wrong, never a credential. */
export class GrantRefused extends Error {
  override name = "GrantRefused";
}
