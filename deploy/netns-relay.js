// claw-cage api-only profile: the relay inside the agent's network namespace.
//
// docker-compose.api-only.yml runs this in the openclaw-netns service, whose namespace has only
// loopback and no route (network_mode: none); the gateway and the CLI join that namespace. The
// only ways in and out are the two Unix sockets bind-mounted from the host:
//   egress   127.0.0.1:3128 here      -> CLAW_EGRESS_SOCK (the host's claw-cage proxy), so
//            OPENCLAW_PROXY_URL=http://127.0.0.1:3128 reaches the proxy and nothing else;
//   ingress  CLAW_GATEWAY_SOCK (made here) -> 127.0.0.1:18789 here (the gateway), so the host's
//            claw-cage proxy can serve the dashboard on the host's 127.0.0.1:18789.
//   routes   127.0.0.1:18790 here -> CLAW_ROUTES_SOCK (the proxy's key routes: a provider's
//            API with the key the proxy adds, Telegram's Bot API, local-only's Ollama with its
//            path allow-list). OpenClaw's baseUrls point here (openclaw.routes.json); its
//            Ollama memory embeddings go direct to a loopback baseUrl (proxy.loopbackMode
//            gateway-only), and here that still reaches only the proxy's route.
//   loopback 127.0.0.1:PORT here, for each PORT in CLAW_LOOPBACK_PORTS (default none)
//            -> CONNECT 127.0.0.1:PORT through CLAW_EGRESS_SOCK, decided by the proxy's list.
//            Ollama is no longer carried this way: a raw tunnel let the agent reach all of
//            its API (/api/pull makes the host's Ollama contact any registry).
// Bytes are copied as they are: the host proxy decides what is allowed. When it is down, a
// connection to 127.0.0.1:3128 is accepted and closed at once: no egress (fail closed).
"use strict";

const fs = require("fs");
const net = require("net");

const EGRESS_SOCK = process.env.CLAW_EGRESS_SOCK || "/run/claw-cage/egress/proxy.sock";
const GATEWAY_SOCK = process.env.CLAW_GATEWAY_SOCK || "/run/claw-cage/gateway/gateway.sock";
const ROUTES_SOCK = process.env.CLAW_ROUTES_SOCK || "/run/claw-cage/egress/routes.sock";
const EGRESS_PORT = 3128;
const ROUTES_PORT = 18790;
const GATEWAY_PORT = parseInt(process.env.OPENCLAW_GATEWAY_PORT || "18789", 10);
const MAX_CONNS = 256;

function say(msg) {
  process.stderr.write("netns-relay: " + msg + "\n");
}

// Copy both ways; either side's error or close ends both (half-close passes through).
function relay(client, target) {
  const upstream = net.connect(target);
  const end = () => { client.destroy(); upstream.destroy(); };
  client.on("error", end);
  upstream.on("error", end);
  client.on("close", end);
  upstream.on("close", end);
  client.pipe(upstream);
  upstream.pipe(client);
}

// A loopback port's connection: CONNECT 127.0.0.1:PORT first; on 200, copy both ways (the
// bytes after the answer's head are the server's); any other answer closes the client.
function tunnel(client, port) {
  const upstream = net.connect({ path: EGRESS_SOCK });
  const end = () => { client.destroy(); upstream.destroy(); };
  for (const s of [client, upstream]) { s.on("error", end); s.on("close", end); }
  const target = "127.0.0.1:" + port;
  upstream.write("CONNECT " + target + " HTTP/1.1\r\nHost: " + target + "\r\n\r\n");
  let head = Buffer.alloc(0);
  const answer = (d) => {
    head = Buffer.concat([head, d]);
    const i = head.indexOf("\r\n\r\n");
    if (i < 0) { if (head.length > 16384) end(); return; }
    upstream.removeListener("data", answer);
    if (!/^HTTP\/1\.[01] 200 /.test(head.toString("latin1", 0, i))) return end();
    if (head.length > i + 4) client.write(head.subarray(i + 4));
    client.pipe(upstream);
    upstream.pipe(client);
  };
  upstream.on("data", answer);
}

function serve(name, target) {
  const server = net.createServer({ allowHalfOpen: true }, (c) => relay(c, target));
  server.maxConnections = MAX_CONNS;
  server.on("error", (e) => { say(name + ": " + e.code); process.exit(1); });
  return server;
}

// A socket file left by a previous run (the bind-mounted directory outlives the container)
// would make listen() fail with EADDRINUSE: remove it, but only a socket.
function clearStale(path) {
  try {
    if (fs.lstatSync(path).isSocket()) fs.unlinkSync(path);
  } catch (e) {
    if (e.code !== "ENOENT") throw e;
  }
}

serve("egress", { path: EGRESS_SOCK }).listen(EGRESS_PORT, "127.0.0.1", () => {
  say("127.0.0.1:" + EGRESS_PORT + " -> " + EGRESS_SOCK);
});

serve("routes", { path: ROUTES_SOCK }).listen(ROUTES_PORT, "127.0.0.1", () => {
  say("127.0.0.1:" + ROUTES_PORT + " -> " + ROUTES_SOCK);
});

const LOOPBACK = process.env.CLAW_LOOPBACK_PORTS || "";
for (const port of LOOPBACK.split(/[ ,]+/).filter(Boolean).map((p) => parseInt(p, 10))) {
  const server = net.createServer({ allowHalfOpen: true }, (c) => tunnel(c, port));
  server.maxConnections = MAX_CONNS;
  // a port taken here (by the gateway itself) must not take the egress relay down with it
  server.on("error", (e) => say("loopback " + port + ": " + e.code));
  server.listen(port, "127.0.0.1", () => {
    say("127.0.0.1:" + port + " -> CONNECT 127.0.0.1:" + port + " via " + EGRESS_SOCK);
  });
}

clearStale(GATEWAY_SOCK);
const ingress = serve("ingress", { host: "127.0.0.1", port: GATEWAY_PORT });
ingress.listen(GATEWAY_SOCK, () => {
  // The host proxy runs as a user of its own (DynamicUser): it must be able to connect. Who
  // reaches the socket is decided by its directory (root-made, this container's uid owns it).
  fs.chmodSync(GATEWAY_SOCK, 0o666);
  say(GATEWAY_SOCK + " -> 127.0.0.1:" + GATEWAY_PORT);
});

for (const sig of ["SIGTERM", "SIGINT"]) {
  process.on(sig, () => {
    try { fs.unlinkSync(GATEWAY_SOCK); } catch (e) { /* already gone */ }
    process.exit(0);
  });
}
