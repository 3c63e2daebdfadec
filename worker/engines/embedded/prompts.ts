import {
  GeneralChatWrapper,
  LlamaVocabularyType,
  resolveChatWrapper,
  type ChatModelFunctions,
  type ChatWrapper,
  type LlamaModel,
  type LlamaText,
  type Token,
} from "node-llama-cpp";
import { chatHistory } from "./chat-history.ts";
import type { ChatMessage } from "./openai-schemas.ts";

/** A request's input, tokenized the way the engine will evaluate it. */
export interface Prompt {
  /** Every token the sequence evaluates before the first generated one, the beginning-of-sequence token included. */
  tokens: Token[];
  /** End-of-turn markers of the prompt's format that are plain text: matched on the decoded text, as `stop` is. */
  formatStopStrings: readonly string[];
  /** Those that contain special tokens (`</s>`, `<|im_end|>`): they decode to no text, so node-llama-cpp matches their tokens. */
  formatStopTokens: readonly LlamaText[];
  /** The request field the prompt came from, named in a "too long" error. */
  field: "prompt" | "messages";
}

/**
 * The token `LlamaCompletion` puts before every input it is given. This mirrors node-llama-cpp's
 * `resolveBeginningTokenToPrepend`, which it does not export; a prompt's token count (and so
 * `usage.prompt_tokens` and the context check) must include this token.
 */
export function beginningToken(model: LlamaModel): Token | null {
  switch (model.vocabularyType) {
    case LlamaVocabularyType.rwkv:
    case LlamaVocabularyType.ugm:
      return null;
    case LlamaVocabularyType.wpm:
      return model.tokens.bos;
    default:
      return model.tokens.shouldPrependBosToken ? model.tokens.bos : null;
  }
}

/** `tokens` with the model's beginning token in front, exactly once. */
function withBeginningToken(model: LlamaModel, tokens: Token[]): Token[] {
  const first = beginningToken(model);
  if (first === null || tokens[0] === first) return tokens;
  return [first, ...tokens];
}

/**
 * A `/v1/completions` prompt. Special-token text in it (`</s>`, `<|im_start|>`) is parsed as those
 * tokens, as llama-server and vLLM do: a raw completion prompt is the caller's own format.
 */
export function completionPrompt(model: LlamaModel, text: string): Prompt {
  return { tokens: withBeginningToken(model, model.tokenize(text, true)), formatStopStrings: [], formatStopTokens: [], field: "prompt" };
}

/**
 * The chat wrapper a model's messages are rendered with: its own chat template when the GGUF has
 * one (node-llama-cpp maps well-known templates to its specialized wrappers and runs the others as
 * Jinja). Without a template, the general wrapper — not node-llama-cpp's guess from the model's
 * name or BOS string, which wraps any `<s>` model (every LLaMA base model) in Llama 2's `[INST]`
 * format it may never have seen.
 */
export function chatWrapperFor(model: LlamaModel): ChatWrapper {
  const template = model.fileInfo.metadata?.tokenizer?.chat_template;
  if (typeof template === "string" && template.trim() !== "") return resolveChatWrapper(model);
  return new GeneralChatWrapper();
}

/**
 * A `/v1/chat/completions` prompt: the messages rendered by the chat wrapper, ending where the
 * assistant's new turn begins. Message text is plain text (special-token text in it is not parsed
 * as tokens), so a user cannot forge a turn boundary.
 */
export function chatPrompt(model: LlamaModel, wrapper: ChatWrapper, messages: readonly ChatMessage[], functions?: ChatModelFunctions): Prompt {
  const history = chatHistory(messages);
  // The turn the model writes; after tool results it continues the turn that called the tools, as
  // node-llama-cpp's own function calling does (the template renders the results inside it).
  const last = history.at(-1);
  const continuesCalls = last?.type === "model" && last.response.some((r) => typeof r === "object" && r.type === "functionCall");
  if (!continuesCalls) history.push({ type: "model", response: [] });
  const hasFunctions = functions !== undefined && Object.keys(functions).length > 0;
  const state = wrapper.generateContextState({ chatHistory: history, ...(hasFunctions && { availableFunctions: functions, documentFunctionParams: true }) });
  // A trigger with a control token in it (`</s>`, `<|im_end|>`) decodes to no text; any other, even
  // one written as special-token text (the general wrapper's "<end>"), is ordinary text to match.
  const hasControlToken = (t: LlamaText) => t.tokenize(model.tokenizer).some((token) => model.isSpecialToken(token));
  return {
    tokens: withBeginningToken(model, state.contextText.tokenize(model.tokenizer)),
    formatStopStrings: state.stopGenerationTriggers.filter((t) => !hasControlToken(t)).map((t) => t.toString()),
    formatStopTokens: state.stopGenerationTriggers.filter(hasControlToken),
    field: "messages",
  };
}
