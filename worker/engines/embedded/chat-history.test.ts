import { JinjaTemplateChatWrapper } from "node-llama-cpp";
import { describe, expect, it } from "vitest";
import { chatHistory } from "./chat-history.ts";
import { OpenAiError } from "./openai-error.ts";
import type { ChatMessage } from "./openai-schemas.ts";

/** A ChatML template with tools, in the style of Qwen 2.5's: calls and results as the model was trained on them. */
const TEMPLATE = `{%- if tools %}<|im_start|>system
Tools:{% for tool in tools %} {{ tool | tojson }}{% endfor %}<|im_end|>
{% endif %}
{%- for message in messages %}
{%- if message.role == "tool" %}<|im_start|>user
<tool_response>{{ message.content }}</tool_response><|im_end|>
{% elif message.role == "assistant" %}<|im_start|>assistant
{{ message.content }}{% if message.tool_calls %}{% for call in message.tool_calls %}<tool_call>{"name": "{{ call.function.name }}", "arguments": {{ call.function.arguments | tojson }}}</tool_call>{% endfor %}{% endif %}<|im_end|>
{% else %}<|im_start|>{{ message.role }}
{{ message.content }}<|im_end|>
{% endif %}
{%- endfor %}
{%- if add_generation_prompt %}<|im_start|>assistant
{% endif %}`;

const conversation: ChatMessage[] = [
  { role: "user", content: "Weather in Paris?" },
  { role: "assistant", content: null, tool_calls: [{ id: "call_1", type: "function", function: { name: "get_weather", arguments: '{"city":"Paris"}' } }] },
  { role: "tool", tool_call_id: "call_1", content: "21 degrees" },
];

describe("chatHistory", () => {
  it("renders an assistant's tool call and the tool's result through a model's chat template", () => {
    const wrapper = new JinjaTemplateChatWrapper({ template: TEMPLATE });
    const history = [...chatHistory(conversation)];
    const state = wrapper.generateContextState({
      chatHistory: history,
      availableFunctions: { get_weather: { description: "Weather", params: { type: "object", properties: { city: { type: "string" } } } } },
      documentFunctionParams: true,
    });
    const text = state.contextText.toString();
    expect(text).toContain("Weather in Paris?");
    expect(text).toContain("get_weather");
    expect(text).toContain("Paris");
    expect(text).toContain("21 degrees");
    expect(text.indexOf("get_weather", text.indexOf("Weather in Paris?"))).toBeLessThan(text.indexOf("21 degrees"));
  });

  it("attaches each result to its call and refuses a tool message that answers none", () => {
    const history = chatHistory(conversation);
    expect(history).toEqual([
      { type: "user", text: "Weather in Paris?" },
      { type: "model", response: [{ type: "functionCall", name: "get_weather", params: { city: "Paris" }, result: "21 degrees" }] },
    ]);
    const stray: ChatMessage[] = [...conversation, { role: "tool", tool_call_id: "call_1", content: "again" }];
    expect(() => chatHistory(stray)).toThrow(OpenAiError);
    try {
      chatHistory(stray);
    } catch (err) {
      expect((err as OpenAiError).param).toBe("messages[3].tool_call_id");
    }
    const badArguments: ChatMessage[] = [{ role: "assistant", content: "", tool_calls: [{ id: "c", type: "function", function: { name: "f", arguments: "{" } }] }];
    expect(() => chatHistory(badArguments)).toThrow(/messages\[0\]\.tool_calls\[0\]\.function\.arguments/);
  });
});
