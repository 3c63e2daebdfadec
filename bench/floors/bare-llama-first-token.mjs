// The floor of the LLM cold start (bench/llm-cold-start.ts): a bare Node process that loads the model
// with node-llama-cpp as the embedded engine does (prebuilt CPU binary, never a build; one thread)
// and generates one token from the bench's prompt. It prints one JSON line at the first token and
// exits. Plain .mjs: no loader, nothing of Hearth's.
import { getLlama, LlamaCompletion } from "node-llama-cpp";

const [modelPath, prompt] = process.argv.slice(2);
const llama = await getLlama({ gpu: false, build: "never", maxThreads: 1 });
const model = await llama.loadModel({ modelPath });
const context = await model.createContext({ sequences: 1, contextSize: 1024, threads: 1 });
const completion = new LlamaCompletion({ contextSequence: context.getSequence() });
let printed = false;
await completion.generateCompletion(prompt, {
  maxTokens: 1,
  temperature: 0,
  onTextChunk: () => {
    if (printed) return;
    printed = true;
    process.stdout.write(`${JSON.stringify({ t: "floor-llm", phase: "first-token", ms: Math.round(performance.now()) })}\n`);
  },
});
process.exit(printed ? 0 : 2);
