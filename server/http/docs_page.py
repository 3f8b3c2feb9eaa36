"""The interactive API docs page: one self-contained HTML document (no CDN, no external assets).

It fetches ``/v1/openapi.json`` (with the token typed in, for private mode) and renders every operation with
its parameters, request and response shapes, and a small "try it" form (WebSockets included).
"""
# ruff: noqa: E501

DOCS_HTML = r"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>voxlane API</title>
<style>
:root{--b:#d0d7de;--m:#57606a;--bg:#f6f8fa}
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1f2328}
header{padding:14px 24px;border-bottom:1px solid var(--b);display:flex;gap:16px;align-items:center;flex-wrap:wrap}
header h1{font-size:20px;margin:0}main{padding:8px 24px 48px;max-width:1100px}
input,textarea,select{font:inherit;border:1px solid var(--b);border-radius:6px;padding:4px 8px}
textarea{width:100%;font-family:ui-monospace,monospace;min-height:80px}
button{font:inherit;border:1px solid var(--b);border-radius:6px;padding:4px 12px;background:var(--bg);cursor:pointer}
h2{margin:24px 0 8px;font-size:17px;text-transform:capitalize}
details.op{border:1px solid var(--b);border-radius:8px;margin:6px 0;background:#fff}
details.op>summary{padding:8px 12px;cursor:pointer;display:flex;gap:10px;align-items:center}
.m{font:600 12px ui-monospace,monospace;padding:2px 8px;border-radius:4px;color:#fff;min-width:64px;text-align:center}
.GET{background:#0969da}.POST{background:#1a7f37}.PATCH{background:#9a6700}.PUT{background:#8250df}
.DELETE{background:#cf222e}.WS{background:#57606a}
.p{font-family:ui-monospace,monospace}.s{color:var(--m)}.lock{color:var(--m);font-size:12px}
.body{padding:4px 16px 14px;border-top:1px solid var(--b)}
pre{background:var(--bg);padding:8px;border-radius:6px;overflow:auto;max-height:420px;margin:4px 0}
table{border-collapse:collapse}td,th{border-bottom:1px solid var(--b);padding:3px 10px 3px 0;text-align:left}
#err{color:#cf222e}
</style></head><body>
<header><h1>voxlane API</h1><span class="s" id="ver"></span>
<label>Token <input id="token" size="40" placeholder="Bearer token (private mode)"></label>
<button id="reload">Load</button><a href="/v1/openapi.json">openapi.json</a><span id="err"></span></header>
<main id="main"><p class="s">Loading the API description&hellip;</p></main>
<script>
"use strict";
const $ = (t, a = {}, ...kids) => { const e = document.createElement(t);
  for (const [k, v] of Object.entries(a)) { if (k === "text") e.textContent = v; else e.setAttribute(k, v); }
  for (const k of kids) e.append(k); return e; };
const tokenBox = document.getElementById("token");
tokenBox.value = localStorage.getItem("voxlane-token") || "";
let spec = null;
function authHeaders() { const t = tokenBox.value.trim(); return t ? {Authorization: "Bearer " + t} : {}; }
function resolve(s) { while (s && s.$ref) s = spec.components.schemas[s.$ref.split("/").pop()]; return s || {}; }
function typeOf(s, depth = 0) {
  if (!s) return "any"; if (s.$ref) { const n = s.$ref.split("/").pop(); return depth > 3 ? n : shape(resolve(s), depth + 1, n); }
  if (s.anyOf) return s.anyOf.map(x => typeOf(x, depth)).join(" | ");
  if (s.type === "array") return "[" + typeOf(s.items, depth) + "]";
  if (s.enum) return s.enum.map(v => JSON.stringify(v)).join(" | ");
  if (s.type === "object" && s.properties) return shape(s, depth);
  return s.format === "binary" ? "binary" : (s.type || "any");
}
function shape(s, depth, name) {
  if (!s.properties) return name || s.type || "object";
  const pad = "  ".repeat(depth + 1), req = new Set(s.required || []);
  const lines = Object.entries(s.properties).map(([k, v]) => pad + k + (req.has(k) ? "" : "?") + ": " + typeOf(v, depth));
  return "{\n" + lines.join(",\n") + "\n" + "  ".repeat(depth) + "}";
}
function example(s, depth = 0) {
  s = resolve(s); if (depth > 4) return null;
  if (s.default !== undefined) return s.default; if (s.anyOf) return example(s.anyOf[0], depth + 1);
  if (s.type === "object") { const o = {}; for (const [k, v] of Object.entries(s.properties || {})) o[k] = example(v, depth + 1); return o; }
  if (s.type === "array") return []; if (s.type === "integer" || s.type === "number") return 0;
  if (s.type === "boolean") return false; return s.enum ? s.enum[0] : "";
}
function tryPanel(path, method, op) {
  const box = $("div"), inputs = {};
  for (const p of op.parameters || []) {
    const i = $("input", {placeholder: p.name, size: 30}); inputs[p.name] = [p.in, i];
    box.append($("div", {}, $("label", {text: p.name + " (" + p.in + ") "}), i));
  }
  const rb = op.requestBody && op.requestBody.content; let bodyEl = null, kind = null;
  if (rb) {
    kind = Object.keys(rb)[0];
    if (kind === "application/json") { bodyEl = $("textarea"); bodyEl.value = JSON.stringify(example(rb[kind].schema), null, 2); }
    else { bodyEl = $("input", {type: "file"}); }
    box.append($("div", {}, $("label", {text: "body (" + kind + ") "}), bodyEl));
  }
  const out = $("pre", {text: ""}), send = $("button", {text: method === "websocket" ? "Connect" : "Send"});
  send.onclick = async () => {
    let url = path; const q = new URLSearchParams();
    for (const [name, [where, el]] of Object.entries(inputs)) {
      if (where === "path") url = url.replace("{" + name + "}", encodeURIComponent(el.value));
      else if (el.value) q.set(name, el.value);
    }
    if (method === "websocket") {
      const t = tokenBox.value.trim(); if (t) q.set("token", t);
      const ws = new WebSocket(location.origin.replace(/^http/, "ws") + url + (q.toString() ? "?" + q : ""));
      out.textContent = ""; ws.onmessage = e => { out.textContent += e.data + "\n"; };
      ws.onclose = e => { out.textContent += "[closed " + e.code + " " + e.reason + "]\n"; }; return;
    }
    const init = {method: method.toUpperCase(), headers: authHeaders()};
    if (bodyEl && kind === "application/json") { init.headers["Content-Type"] = kind; init.body = bodyEl.value; }
    else if (bodyEl && bodyEl.files[0]) {
      if (kind === "multipart/form-data") { const f = new FormData(); f.append("file", bodyEl.files[0]); init.body = f; }
      else { init.body = bodyEl.files[0]; }
    }
    out.textContent = "...";
    try { const r = await fetch(url + (q.toString() ? "?" + q : ""), init);
      const type = r.headers.get("content-type") || ""; let text;
      if (type.includes("json")) text = JSON.stringify(await r.json(), null, 2);
      else if (type.startsWith("text/")) text = (await r.text()).slice(0, 4000);
      else text = "(" + type + ", " + (await r.blob()).size + " bytes)";
      out.textContent = r.status + " " + r.statusText + "\n" + text;
    } catch (e) { out.textContent = String(e); }
  };
  box.append(send, out); return box;
}
function render() {
  const main = document.getElementById("main"); main.textContent = "";
  document.getElementById("ver").textContent = "v" + spec.info.version + " \u00b7 " + spec["x-auth-mode"] + " mode";
  main.append($("p", {class: "s", text: spec.info.description}));
  const byTag = {};
  for (const t of spec.tags || []) byTag[t.name] = [];
  for (const [path, item] of Object.entries(spec.paths)) for (const [method, op] of Object.entries(item))
    (byTag[op.tags[0]] = byTag[op.tags[0]] || []).push([path, method, op]);
  for (const [tag, ops] of Object.entries(byTag)) {
    if (!ops.length) continue;
    main.append($("h2", {text: tag}));
    for (const [path, method, op] of ops) {
      const label = op["x-websocket"] ? "WS" : method.toUpperCase();
      const sec = op.security || [], optional = sec.some(x => Object.keys(x).length === 0);
      const d = $("details", {class: "op"}, $("summary", {}, $("span", {class: "m " + label, text: label}),
        $("span", {class: "p", text: path}), $("span", {class: "s", text: op.summary}),
        $("span", {class: "lock", text: !sec.length ? "open" : optional ? "token optional" : "token"})));
      d.id = op.operationId; if (location.hash === "#" + op.operationId) d.open = true;
      const body = $("div", {class: "body"}, $("p", {text: op.description || ""}));
      if (op.parameters) { const t = $("table", {}, $("tr", {}, $("th", {text: "parameter"}), $("th", {text: "in"}), $("th", {text: "type"}), $("th", {text: "description"})));
        for (const p of op.parameters) t.append($("tr", {}, $("td", {class: "p", text: p.name + (p.required ? "" : "?")}), $("td", {text: p.in}), $("td", {text: p.schema.type}), $("td", {text: p.description || ""})));
        body.append(t); }
      if (op.requestBody) for (const [ct, c] of Object.entries(op.requestBody.content))
        body.append($("h4", {text: "Request body (" + ct + ")"}), $("pre", {text: typeOf(c.schema)}));
      body.append($("h4", {text: "Responses"}));
      for (const [code, r] of Object.entries(op.responses)) {
        const c = r.content && Object.values(r.content)[0];
        body.append($("div", {}, $("b", {text: code + " "}), $("span", {text: r.description})));
        if (c && c.schema && code < 400) body.append($("pre", {text: typeOf(c.schema)}));
      }
      body.append($("h4", {text: "Try it"}), tryPanel(path, op["x-websocket"] ? "websocket" : method, op));
      d.append(body); main.append(d);
    }
  }
  const err = spec.components.schemas.ErrorResponse;
  if (err) main.append($("h2", {text: "errors"}), $("pre", {text: typeOf({$ref: "#/components/schemas/ErrorResponse"})}));
}
async function load() {
  localStorage.setItem("voxlane-token", tokenBox.value.trim());
  document.getElementById("err").textContent = "";
  const r = await fetch("/v1/openapi.json", {headers: authHeaders()});
  if (!r.ok) { const b = await r.json().catch(() => ({})); document.getElementById("err").textContent =
    r.status + ": " + ((b.error && b.error.message) || r.statusText) + (r.status === 401 ? " - enter a token" : ""); return; }
  spec = await r.json(); render();
}
document.getElementById("reload").onclick = load; load();
</script></body></html>
"""
