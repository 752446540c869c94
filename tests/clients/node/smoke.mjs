// The openai Node SDK against the gateway: what each call handed back, as one JSON line on stdout.
// GATEWAY_URL (…/v1), GATEWAY_TOKEN and MODEL come from tests/clients/test_openai_node.py.
import OpenAI from "openai";

const { GATEWAY_URL: baseURL, GATEWAY_TOKEN: apiKey, MODEL: model } = process.env;
const client = new OpenAI({ baseURL, apiKey, maxRetries: 0 });
const messages = [{ role: "user", content: "Say hello" }];
const out = {};

out.chat = (await client.chat.completions.create({ model, messages })).choices[0].message.content;
out.stream = "";
for await (const chunk of await client.chat.completions.create({ model, messages, stream: true })) {
  out.stream += chunk.choices[0]?.delta?.content ?? "";
  if (chunk.usage) out.streamUsage = true;
}
out.completion = (await client.completions.create({ model, prompt: "Say hello" })).choices[0].text;
out.embedding = (await client.embeddings.create({ model, input: "a" })).data[0].embedding.length;
out.response = (await client.responses.create({ model, input: "Say hello" })).output_text;
out.responseStream = "";
for await (const event of await client.responses.create({ model, input: "Say hello", stream: true })) {
  if (event.type === "response.output_text.delta") out.responseStream += event.delta;
}
out.models = [];
for await (const m of client.models.list()) out.models.push(m.id);
try {
  await new OpenAI({ baseURL, apiKey: "lgw_not-a-token", maxRetries: 0 }).models.list();
} catch (error) {
  out.authError = error instanceof OpenAI.AuthenticationError ? "AuthenticationError" : String(error);
}
try {
  await client.chat.completions.create({ model, messages, api_base: "http://elsewhere.example" });
} catch (error) {
  out.badRequest = error instanceof OpenAI.BadRequestError ? `BadRequestError:${error.param}` : String(error);
}
console.log(JSON.stringify(out));
