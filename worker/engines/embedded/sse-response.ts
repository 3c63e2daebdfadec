/** Writes one server-sent event; `"[DONE]"` is sent verbatim, anything else as JSON. */
export type SendEvent = (data: unknown) => void;

export interface SseResponseOptions {
  /** Writes the events; the stream ends with `data: [DONE]` when it resolves. */
  produce: (send: SendEvent) => Promise<void>;
  /** Called when the client stops reading (disconnects) before the stream ended. */
  onCancel: () => void;
  /** The event to send when `produce` rejects, if any (OpenAI's SDKs raise an `error` event as an exception). */
  errorEvent: (err: unknown) => unknown;
}

const encoder = new TextEncoder();

/**
 * A `text/event-stream` response in OpenAI's framing: `data: {json}\n\n` per event, then
 * `data: [DONE]\n\n`. Each event is enqueued the moment `send` is called and the Node adapter
 * writes every chunk to the socket as it arrives, so nothing is held back for batching. Events are
 * a few dozen bytes per decoded token, so the queue is not bounded: a client that reads slowly
 * costs little memory, and one that leaves cancels the generation.
 */
export function sseResponse(options: SseResponseOptions): Response {
  let open = true;
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      const send: SendEvent = (data) => {
        if (open) controller.enqueue(encoder.encode(`data: ${data === "[DONE]" ? data : JSON.stringify(data)}\n\n`));
      };
      void options
        .produce(send)
        .then(
          () => send("[DONE]"),
          (err: unknown) => {
            const event = options.errorEvent(err);
            if (event !== undefined) send(event);
          },
        )
        .finally(() => {
          if (!open) return;
          open = false;
          controller.close();
        });
    },
    cancel() {
      open = false;
      options.onCancel();
    },
  });
  return new Response(body, {
    headers: {
      "content-type": "text/event-stream; charset=utf-8",
      "cache-control": "no-cache",
      // Proxies such as nginx buffer responses unless told not to; tokens must reach the client as decoded.
      "x-accel-buffering": "no",
    },
  });
}
