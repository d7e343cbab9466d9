// Drives `contentmill serve` with the official openai npm package; prints one JSON object of what it saw.
import OpenAI from "openai";

const client = new OpenAI({ baseURL: process.env.SERVER_URL, apiKey: process.env.SERVER_KEY, maxRetries: 0 });
const messages = [{ role: "user", content: "Describe a green wool scarf." }];
const seen = {};

const plain = await client.chat.completions.create({ model: "gpt-4o-mini", messages, max_tokens: 30 });
seen.plain = { text: plain.choices[0].message.content, usage: plain.usage };

const stream = await client.chat.completions.create({
  model: "gpt-4o-mini", max_tokens: 30, stream: true, stream_options: { include_usage: true },
  messages: [{ role: "user", content: "Describe a red wool scarf." }],
});
let text = "";
let usage = null;
for await (const chunk of stream) {
  text += chunk.choices[0]?.delta?.content ?? "";
  if (chunk.usage) usage = chunk.usage;
}
seen.stream = { text, usage };

for (const [name, model, key] of [["denied", "gpt-4o", process.env.SERVER_KEY], ["bad_key", "gpt-4o-mini", "cm-wrong"]]) {
  try {
    await new OpenAI({ baseURL: process.env.SERVER_URL, apiKey: key, maxRetries: 0 })
      .chat.completions.create({ model, messages });
    seen[name] = null;
  } catch (error) {
    seen[name] = { cls: error.constructor.name, status: error.status, code: error.code };
  }
}
console.log(JSON.stringify(seen));
