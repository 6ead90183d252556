// A second real MCP client: the TypeScript SDK's, through the Warden MCP
// gateway, with a Warden access token and a DPoP proof on every request.
//
// Environment: MCP_SDK_DIR (the @modelcontextprotocol/sdk package folder),
// GATEWAY_URL, WARDEN_TOKEN, AGENT_JWK (the agent's private Ed25519 JWK),
// CALL_TOOL and CALL_ARGS (JSON). Prints one JSON object: the tools listed,
// the call's result, and the call's error if it failed.
import { createHash, createPrivateKey, randomUUID, sign } from "node:crypto";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const sdk = process.env.MCP_SDK_DIR;
const { Client } = await import(pathToFileURL(join(sdk, "dist/esm/client/index.js")).href);
const { StreamableHTTPClientTransport } = await import(pathToFileURL(join(sdk, "dist/esm/client/streamableHttp.js")).href);

const url = process.env.GATEWAY_URL;
const token = process.env.WARDEN_TOKEN;
const jwk = JSON.parse(process.env.AGENT_JWK);
const key = createPrivateKey({ key: jwk, format: "jwk" });
const b64 = (b) => Buffer.from(b).toString("base64url");

function proof(method, target) {
  const u = new URL(target);
  const header = { typ: "dpop+jwt", alg: "EdDSA", jwk: { kty: jwk.kty, crv: jwk.crv, x: jwk.x } };
  const payload = {
    jti: randomUUID(), htm: method, htu: u.origin + u.pathname, iat: Math.floor(Date.now() / 1000),
    ath: b64(createHash("sha256").update(token).digest()),
  };
  const input = b64(JSON.stringify(header)) + "." + b64(JSON.stringify(payload));
  return input + "." + b64(sign(null, Buffer.from(input), key));
}

// Every request the transport makes carries the token and a fresh proof.
async function dpopFetch(input, init = {}) {
  const target = typeof input === "string" ? input : input.url ?? String(input);
  const headers = new Headers(init.headers ?? {});
  headers.set("Authorization", "DPoP " + token);
  headers.set("DPoP", proof((init.method ?? "GET").toUpperCase(), target));
  return fetch(input, { ...init, headers });
}

const client = new Client({ name: "node-agent", version: "1.0.0" });
await client.connect(new StreamableHTTPClientTransport(new URL(url), { fetch: dpopFetch }));
const out = {};
out.tools = (await client.listTools()).tools.map((t) => t.name).sort();
try {
  out.result = await client.callTool({ name: process.env.CALL_TOOL, arguments: JSON.parse(process.env.CALL_ARGS || "{}") });
} catch (e) {
  out.error = { code: e.code, message: e.message };
}
try {
  await client.callTool({ name: "market__place_order", arguments: { symbol: "ACME", quantity: 1 } });
} catch (e) {
  out.denied = { code: e.code, message: e.message, data: e.data };
}
await client.close();
console.log(JSON.stringify(out));
