/**
 * The replication HTTP(S) endpoint, shared by leaders and followers (a follower serves its own
 * status, its WAL for promotion catch-up, and accepts fencing). Every request must carry
 * `Authorization: Bearer <token>` (compared in constant time) and may carry the sender's epoch;
 * every answer carries ours.
 *
 *   GET  /status                  JSON status of this node
 *   GET  /metrics                 Prometheus text
 *   GET  /snapshot                the base snapshot (a `dr backup` archive with WAL positions)
 *   GET  /wal                     runs and their durable tails
 *   GET  /wal/<run>?from_seq=N&limit=L&wait_ms=W
 *                                 WAL lines from seq N, byte-identical, NDJSON; long-polls up to W
 *   POST /ack                     a follower's highest durable positions
 *   POST /fence                   a promotion announces a newer epoch
 *
 * The endpoint faces the network before anyone is authenticated, and in `start
 * --replication-listen` it shares the orchestrator's file descriptors: every connection is
 * bounded in time (headers, whole request, idle keep-alive, TLS handshake) and in number (in all
 * and per client address), and an error answer (401, every other 4xx, 5xx) closes its connection
 * without reading the rest of the request. See `ConnectionLimits`.
 */
import { readFile } from "node:fs/promises";
import http from "node:http";
import https from "node:https";
import type { AddressInfo, Socket } from "node:net";
import { ExitCode, UserError } from "../errors/errors.js";
import { bearerMatches } from "./auth.js";
import { REGION_HEADER, REGION_NAME } from "./client.js";
import { EPOCH_HEADER, requestEpoch } from "./epoch.js";
import type { WalSource } from "./wal-source.js";
import { DEFAULT_LIMITS, type ConnectionLimits } from "./limits.js";

export const MAX_WAIT_MS = 30_000;
export const MAX_BATCH = 1000;
const MAX_BODY = 1 << 20;

export interface RequestContext {
  epoch: number | undefined;
  region: string | undefined;
}

/** What a node must answer; the server does transport, auth and epoch headers. */
export interface NodeHandlers {
  epoch(): number;
  /**
   * Called for every authenticated request that carries an epoch. Returns a refusal message when
   * the request must be refused (e.g. this leader is fenced), otherwise undefined.
   */
  checkEpoch(ctx: RequestContext, route: string): Promise<string | undefined>;
  contact?(ctx: RequestContext): void;
  status(): Promise<unknown>;
  metrics(): Promise<string>;
  wal: WalSource;
  ack?(body: unknown, ctx: RequestContext): Promise<unknown>;
  snapshot?(res: http.ServerResponse): Promise<void>;
  fence(body: unknown, ctx: RequestContext): Promise<unknown>;
}

export interface ServerOptions {
  host: string;
  port: number;
  token: string;
  tls?: { certFile: string; keyFile: string };
  handlers: NodeHandlers;
  log: (line: string) => void;
  limits?: Partial<ConnectionLimits>;
}

export interface RunningServer {
  url: string;
  port: number;
  close(): Promise<void>;
}

export function parseListen(value: string, flag = "--listen"): { host: string; port: number } {
  const m = /^(.*):(\d{1,5})$/.exec(value);
  const port = m ? Number(m[2]) : NaN;
  if (!m || !m[1] || port > 65535) {
    throw new UserError(`${flag} ${value}: expected HOST:PORT (e.g. 127.0.0.1:7070)`, ExitCode.USAGE);
  }
  return { host: m[1].replace(/^\[|\]$/g, ""), port };
}

export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

function sendJson(res: http.ServerResponse, status: number, value: unknown): void {
  const body = JSON.stringify(value);
  // An error answer ends the connection: the rest of a refused request (a body trickled after its
  // 401, say) is never read, and a client that erred starts again from a new connection.
  if (status >= 400) res.setHeader("connection", "close");
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(body) });
  res.end(body);
}

/** At most one log line a minute about refused connections, with how many there were. */
function refusalLogger(log: (line: string) => void): (why: string) => void {
  let last = -Infinity;
  let count = 0;
  return (why) => {
    count++;
    if (Date.now() - last < 60_000) return;
    log(`replication: refused ${count} connection(s) since the last such line: ${why}`);
    last = Date.now();
    count = 0;
  };
}

/**
 * Caps the connections of `server` in all and per client address. Counted on the TCP connection,
 * before any TLS handshake or HTTP byte.
 */
function capConnections(server: http.Server, limits: ConnectionLimits, log: (line: string) => void): void {
  const refused = refusalLogger(log);
  server.maxConnections = limits.maxConnections;
  server.on("drop", () => refused(`${limits.maxConnections} connections open (--max-connections)`));
  const perAddress = new Map<string, number>();
  server.on("connection", (socket: Socket) => {
    const address = socket.remoteAddress;
    if (address === undefined) return; // already gone
    const open = perAddress.get(address) ?? 0;
    if (open >= limits.maxConnectionsPerAddress) {
      refused(
        `${open} connections open from ${address} (--max-connections-per-ip ${limits.maxConnectionsPerAddress})`,
      );
      socket.destroy();
      return;
    }
    perAddress.set(address, open + 1);
    socket.once("close", () => {
      const left = (perAddress.get(address) ?? 1) - 1;
      if (left > 0) perAddress.set(address, left);
      else perAddress.delete(address);
    });
  });
}

async function readBody(req: http.IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of req) {
    size += (c as Buffer).length;
    if (size > MAX_BODY) throw new HttpError(413, "request body too large");
    chunks.push(c as Buffer);
  }
  try {
    return JSON.parse(Buffer.concat(chunks).toString("utf8"));
  } catch {
    throw new HttpError(400, "request body is not JSON");
  }
}

function intParam(q: URLSearchParams, name: string, dflt: number, min: number, max: number): number {
  const v = q.get(name);
  if (v === null) return dflt;
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < min) throw new HttpError(400, `${name} must be an integer ≥ ${min}`);
  return Math.min(n, max);
}

/** `GET /wal/<run>`: the WAL lines from `from_seq`, long-polling up to `wait_ms` for new ones. */
async function serveWalLines(
  h: ServerOptions["handlers"],
  req: http.IncomingMessage,
  res: http.ServerResponse,
  url: URL,
  runId: string,
): Promise<void> {
  const fromSeq = intParam(url.searchParams, "from_seq", 0, 0, Number.MAX_SAFE_INTEGER);
  const limit = intParam(url.searchParams, "limit", 50, 1, MAX_BATCH);
  const waitMs = intParam(url.searchParams, "wait_ms", 0, 0, MAX_WAIT_MS);
  let closed = false;
  req.on("close", () => (closed = true));
  const batch = await h.wal.read(runId, fromSeq, limit, closed ? 0 : waitMs);
  res.writeHead(200, {
    "content-type": "application/x-ndjson",
    "x-bernstein-tail-seq": String(batch.tailSeq),
    "x-bernstein-first-seq": String(batch.firstSeq),
    [EPOCH_HEADER]: String(h.epoch()),
  });
  res.end(batch.lines.length ? batch.lines.join("\n") + "\n" : "");
}

/** Authenticates, checks the sender's epoch, and routes one request; throws HttpError to refuse. */
async function handleRequest(
  o: ServerOptions,
  req: http.IncomingMessage,
  res: http.ServerResponse,
): Promise<void> {
  const h = o.handlers;
  res.setHeader(EPOCH_HEADER, String(h.epoch()));
  if (!bearerMatches(req.headers.authorization, o.token)) {
    res.setHeader("www-authenticate", 'Bearer realm="bernstein-replication"');
    return sendJson(res, 401, { error: "missing or wrong bearer token" });
  }
  const url = new URL(req.url ?? "/", "http://x");
  const route = url.pathname;
  const region = typeof req.headers[REGION_HEADER] === "string" ? req.headers[REGION_HEADER] : undefined;
  if (region !== undefined && !REGION_NAME.test(region))
    throw new HttpError(400, `${REGION_HEADER}: a region is letters, digits, . _ -`);
  const ctx: RequestContext = {
    epoch: requestEpoch(req.headers[EPOCH_HEADER], h.epoch(), (m) => new HttpError(400, m)),
    region,
  };
  const refusal = await h.checkEpoch(ctx, route);
  res.setHeader(EPOCH_HEADER, String(h.epoch()));
  if (refusal) return sendJson(res, 409, { error: refusal, epoch: h.epoch() });
  h.contact?.(ctx);

  if (req.method === "GET" && route === "/status") return sendJson(res, 200, await h.status());
  if (req.method === "GET" && route === "/metrics") {
    const text = await h.metrics();
    res.writeHead(200, { "content-type": "text/plain; version=0.0.4" });
    res.end(text);
    return;
  }
  if (req.method === "GET" && route === "/wal") {
    await h.wal.refresh();
    return sendJson(res, 200, { epoch: h.epoch(), runs: h.wal.listRuns() });
  }
  const walMatch = /^\/wal\/([A-Za-z0-9._-]+)$/.exec(route);
  if (req.method === "GET" && walMatch) return serveWalLines(h, req, res, url, walMatch[1]);
  if (req.method === "POST" && route === "/ack") {
    if (!h.ack) throw new HttpError(404, "this node is not a leader");
    return sendJson(res, 200, await h.ack(await readBody(req), ctx));
  }
  if (req.method === "POST" && route === "/fence") {
    return sendJson(res, 200, await h.fence(await readBody(req), ctx));
  }
  if (req.method === "GET" && route === "/snapshot") {
    if (!h.snapshot) throw new HttpError(404, "this node serves no base snapshot");
    return h.snapshot(res);
  }
  throw new HttpError(404, `no route ${req.method} ${route}`);
}

/** The request listener: `handleRequest`, with every failure turned into a JSON error answer. */
function requestListener(o: ServerOptions): http.RequestListener {
  return (req, res) => {
    handleRequest(o, req, res).catch((err: unknown) => {
      const status = err instanceof HttpError ? err.status : err instanceof UserError ? 409 : 500;
      // An answer cut off mid-way is logged whatever its cause: the peer only sees a hang-up.
      if (status === 500 || res.headersSent)
        o.log(`replication: ${req.method} ${req.url}: ${(err as Error).message}`);
      if (res.headersSent) {
        res.destroy(err as Error);
        return;
      }
      sendJson(res, status, { error: (err as Error).message });
    });
  };
}

function serverTimeouts(limits: ConnectionLimits): http.ServerOptions {
  return {
    headersTimeout: limits.headerTimeoutMs,
    requestTimeout: limits.requestTimeoutMs,
    keepAliveTimeout: limits.keepAliveTimeoutMs,
    // Node looks for expired header and request times this often: a bound holds within it.
    connectionsCheckingInterval: Math.max(
      10,
      Math.min(1000, Math.floor(Math.min(limits.headerTimeoutMs, limits.requestTimeoutMs) / 4)),
    ),
  };
}

/** An HTTPS server when `o.tls` is given (its files read now), plain HTTP otherwise. */
async function createServer(
  o: ServerOptions,
  limits: ConnectionLimits,
  listener: http.RequestListener,
): Promise<{ server: http.Server; scheme: string }> {
  const timeouts = serverTimeouts(limits);
  if (!o.tls) return { server: http.createServer(timeouts, listener), scheme: "http" };
  const [cert, key] = await Promise.all([
    readFile(o.tls.certFile).catch(() => {
      throw new UserError(`--tls-cert ${o.tls!.certFile}: cannot read`, ExitCode.USAGE);
    }),
    readFile(o.tls.keyFile).catch(() => {
      throw new UserError(`--tls-key ${o.tls!.keyFile}: cannot read`, ExitCode.USAGE);
    }),
  ]);
  const server = https.createServer(
    { ...timeouts, cert, key, handshakeTimeout: limits.headerTimeoutMs },
    listener,
  );
  return { server, scheme: "https" };
}

function listen(server: http.Server, host: string, port: number): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    server.once("error", (err: NodeJS.ErrnoException) =>
      reject(
        err.code === "EADDRINUSE" || err.code === "EACCES" || err.code === "EADDRNOTAVAIL"
          ? new UserError(`cannot listen on ${host}:${port}: ${err.code}`, ExitCode.USAGE)
          : err,
      ),
    );
    server.listen(port, host, () => resolve());
  });
}

export async function startServer(o: ServerOptions): Promise<RunningServer> {
  const given = Object.entries(o.limits ?? {}).filter(([, v]) => v !== undefined);
  const limits: ConnectionLimits = { ...DEFAULT_LIMITS, ...Object.fromEntries(given) };
  const { server, scheme } = await createServer(o, limits, requestListener(o));
  capConnections(server, limits, o.log);
  await listen(server, o.host, o.port);
  const port = (server.address() as AddressInfo).port;
  const hostPart = o.host.includes(":") ? `[${o.host}]` : o.host;
  return {
    url: `${scheme}://${hostPart}:${port}`,
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
