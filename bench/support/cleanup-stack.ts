/**
 * Last-in, first-out teardown for a bench run: children are stopped before the database they use
 * is dropped. Every step runs even when an earlier one fails; failures are printed, not thrown.
 */
export class CleanupStack {
  private readonly steps: { name: string; run: () => Promise<unknown> }[] = [];
  private running: Promise<void> | undefined;

  push(name: string, run: () => Promise<unknown>): void {
    this.steps.push({ name, run });
  }

  /** Runs every registered step once, newest first; later calls wait for the same run. */
  run(): Promise<void> {
    this.running ??= (async () => {
      while (this.steps.length > 0) {
        const step = this.steps.pop()!;
        try {
          await step.run();
        } catch (err) {
          console.error(`[bench] cleanup "${step.name}" failed: ${err instanceof Error ? err.message : String(err)}`);
        }
      }
    })();
    return this.running;
  }
}
