import type { ChatHistoryItem, ChatModelFunctionCall, ChatModelResponse } from "node-llama-cpp";
import { OpenAiError } from "./openai-error.ts";
import { messageText, type ChatMessage } from "./openai-schemas.ts";

/**
 * OpenAI messages as node-llama-cpp's chat history, which chat wrappers render with the model's
 * template. node-llama-cpp keeps a function call and its result together in the model's turn, so
 * each `tool` message becomes the result of the call with its `tool_call_id` in the assistant
 * message before it; text the assistant wrote after the results stays in the same turn, as
 * templates render an agent loop.
 */
export function chatHistory(messages: readonly ChatMessage[]): ChatHistoryItem[] {
  const history: ChatHistoryItem[] = [];
  /** Calls of the latest assistant message still waiting for their result, by id. */
  let pending = new Map<string, ChatModelFunctionCall>();
  let lastModel: ChatModelResponse | undefined;
  messages.forEach((m, i) => {
    const text = messageText(m.content);
    if (m.role === "tool") {
      const call = pending.get(m.tool_call_id);
      if (!call) {
        throw OpenAiError.invalidRequest(
          `messages[${i}].tool_call_id: ${JSON.stringify(m.tool_call_id)} answers no tool call of the assistant message before it`,
          `messages[${i}].tool_call_id`,
        );
      }
      call.result = text;
      pending.delete(m.tool_call_id);
      return;
    }
    if (m.role === "assistant") {
      const calls = (m.tool_calls ?? []).map((c, j): [string, ChatModelFunctionCall] => [c.id, { type: "functionCall", name: c.function.name, params: parseArguments(c.function.arguments, `messages[${i}].tool_calls[${j}].function.arguments`), result: "" }]);
      const response: ChatModelResponse["response"] = [...(text !== "" ? [text] : []), ...calls.map(([, call]) => call)];
      // An answer after the tools' results continues the turn that called them.
      if (lastModel && history.at(-1) === lastModel && calls.length === 0 && hasCalls(lastModel)) lastModel.response.push(text);
      else {
        lastModel = { type: "model", response };
        history.push(lastModel);
      }
      pending = new Map(calls);
      return;
    }
    pending = new Map();
    history.push(m.role === "user" ? { type: "user", text } : { type: "system", text });
  });
  return history;
}

function hasCalls(item: ChatModelResponse): boolean {
  return item.response.some((r) => typeof r === "object" && r.type === "functionCall");
}

/** OpenAI carries arguments as a JSON string; node-llama-cpp renders them from the value. */
function parseArguments(raw: string, param: string): unknown {
  try {
    return JSON.parse(raw);
  } catch {
    throw OpenAiError.invalidRequest(`${param} is not valid JSON`, param);
  }
}
