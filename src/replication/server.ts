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
 */
import { readFile } from "node:fs/promises";
import http from "node:http";
import https from "node:https";
import type { AddressInfo } from "node:net";
import { ExitCode, UserError } from "../cli/errors.js";
import { bearerMatches } from "./auth.js";
import { REGION_HEADER } from "./client.js";
import { EPOCH_HEADER, requestEpoch } from "./epoch.js";
import type { WalSource } from "./wal-source.js";

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
}

export interface RunningServer {
  url: string;
  port: number;
  close(): Promise<void>;
}

export function parseListen(value: string): { host: string; port: number } {
  const m = /^(.*):(\d{1,5})$/.exec(value);
  const port = m ? Number(m[2]) : NaN;
  if (!m || !m[1] || port > 65535) {
    throw new UserError(`--listen ${value}: expected HOST:PORT (e.g. 127.0.0.1:7070)`, ExitCode.USAGE);
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
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(body) });
  res.end(body);
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

export async function startServer(o: ServerOptions): Promise<RunningServer> {
  const h = o.handlers;
  const handle = async (req: http.IncomingMessage, res: http.ServerResponse): Promise<void> => {
    res.setHeader(EPOCH_HEADER, String(h.epoch()));
    if (!bearerMatches(req.headers.authorization, o.token)) {
      res.setHeader("www-authenticate", 'Bearer realm="bernstein-replication"');
      return sendJson(res, 401, { error: "missing or wrong bearer token" });
    }
    const url = new URL(req.url ?? "/", "http://x");
    const route = url.pathname;
    const ctx: RequestContext = {
      epoch: requestEpoch(req.headers[EPOCH_HEADER], h.epoch(), (m) => new HttpError(400, m)),
      region:
        typeof req.headers[REGION_HEADER] === "string" ? (req.headers[REGION_HEADER] as string) : undefined,
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
    if (req.method === "GET" && walMatch) {
      const runId = walMatch[1];
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
      return;
    }
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
  };

  const listener = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    handle(req, res).catch((err: unknown) => {
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

  let server: http.Server;
  let scheme = "http";
  if (o.tls) {
    const [cert, key] = await Promise.all([
      readFile(o.tls.certFile).catch(() => {
        throw new UserError(`--tls-cert ${o.tls!.certFile}: cannot read`, ExitCode.USAGE);
      }),
      readFile(o.tls.keyFile).catch(() => {
        throw new UserError(`--tls-key ${o.tls!.keyFile}: cannot read`, ExitCode.USAGE);
      }),
    ]);
    server = https.createServer({ cert, key }, listener);
    scheme = "https";
  } else {
    server = http.createServer(listener);
  }
  server.keepAliveTimeout = MAX_WAIT_MS + 5000;
  server.requestTimeout = 0;
  await new Promise<void>((resolve, reject) => {
    server.once("error", (err: NodeJS.ErrnoException) =>
      reject(
        err.code === "EADDRINUSE" || err.code === "EACCES" || err.code === "EADDRNOTAVAIL"
          ? new UserError(`cannot listen on ${o.host}:${o.port}: ${err.code}`, ExitCode.USAGE)
          : err,
      ),
    );
    server.listen(o.port, o.host, () => resolve());
  });
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
