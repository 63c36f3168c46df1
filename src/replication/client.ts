/**
 * The HTTP(S) client side of the replication transport: every request carries the bearer token
 * and this node's epoch; every answer carries the peer's epoch. Keep-alive agents so a follower's
 * long-polls reuse one connection.
 */
import http from "node:http";
import { setLongTimeout } from "../workspace/timer.js";
import https from "node:https";
import type { Readable } from "node:stream";
import { ExitCode, UserError } from "../errors/errors.js";
import { EPOCH_HEADER, parseEpochHeader } from "./epoch.js";

export const REGION_HEADER = "x-bernstein-region";

/**
 * The shape of a region (a follower's name): what `--follower` and `--follower-name` accept, and
 * all a leader takes from the network, where a name ends up in `dr status` and in fencing reasons.
 */
export const REGION_NAME = /^[A-Za-z0-9._-]+$/;

/**
 * A peer's URL as a user gives it (`--leader`, `--follower NAME=URL`, `--peer`, `--new-leader-url`):
 * http(s) with a host, or a usage error naming `given` (the flag and its value). Checked where it is
 * given: a bad one recorded (a role's `leader_url`) or announced (a fence) would only fail later,
 * on another node.
 */
export function parsePeerUrl(url: string, given: string): string {
  let u: URL | undefined;
  try {
    u = new URL(url);
  } catch {
    u = undefined;
  }
  if (!u || (u.protocol !== "http:" && u.protocol !== "https:") || !u.hostname)
    throw new UserError(`${given}: expected a URL http(s)://HOST:PORT`, ExitCode.USAGE);
  return url;
}

export interface PeerOptions {
  baseUrl: string;
  token: string;
  /** PEM of a CA (or self-signed certificate) to trust for https. */
  ca?: string | Buffer;
  /** This node's epoch, sent with every request. */
  epoch: () => number;
  /** This node's name (a follower's region), sent with every request. */
  region?: string;
}

export interface PeerResponse {
  status: number;
  epoch: number | undefined;
  headers: http.IncomingHttpHeaders;
  body: string;
}

export class TransportError extends Error {
  constructor(
    message: string,
    readonly status?: number,
  ) {
    super(message);
    this.name = "TransportError";
  }
}

const httpAgent = new http.Agent({ keepAlive: true, maxSockets: 16 });
const httpsAgents = new Map<string, https.Agent>();

export class Peer {
  constructor(readonly o: PeerOptions) {}

  private agentFor(url: URL): http.Agent {
    if (url.protocol !== "https:") return httpAgent;
    const key = this.o.ca ? String(this.o.ca) : "";
    let a = httpsAgents.get(key);
    if (!a) {
      a = new https.Agent({ keepAlive: true, maxSockets: 16, ca: this.o.ca });
      httpsAgents.set(key, a);
    }
    return a;
  }

  /** Starts a request and resolves with the response stream (the caller consumes it). */
  open(
    method: string,
    pathAndQuery: string,
    opts: {
      body?: unknown;
      timeoutMs: number;
      /** Receives the request's abort as soon as it is sent (before any answer). */
      onAbortable?: (abort: () => void) => void;
    },
  ): Promise<{ res: http.IncomingMessage; epoch: number | undefined; abort: () => void }> {
    const url = new URL(pathAndQuery, this.o.baseUrl);
    const payload = opts.body === undefined ? undefined : Buffer.from(JSON.stringify(opts.body), "utf8");
    const headers: Record<string, string> = {
      authorization: `Bearer ${this.o.token}`,
      [EPOCH_HEADER]: String(this.o.epoch()),
    };
    if (this.o.region) headers[REGION_HEADER] = this.o.region;
    if (payload) {
      headers["content-type"] = "application/json";
      headers["content-length"] = String(payload.length);
    }
    const mod = url.protocol === "https:" ? https : http;
    return new Promise((resolve, reject) => {
      const req = mod.request(url, { method, headers, agent: this.agentFor(url) }, (res) => {
        timer.clear();
        resolve({ res, epoch: parseEpochHeader(res.headers[EPOCH_HEADER]), abort: () => req.destroy() });
      });
      const timer = setLongTimeout(
        () => req.destroy(new TransportError(`${method} ${url.pathname}: timed out`)),
        opts.timeoutMs,
      );
      req.on("error", (err) => {
        timer.clear();
        reject(
          err instanceof TransportError
            ? err
            : new TransportError(`${method} ${url.pathname}: ${err.message}`),
        );
      });
      req.end(payload);
      opts.onAbortable?.(() => req.destroy(new TransportError(`${method} ${url.pathname}: aborted`)));
    });
  }

  /** A request whose whole (small) answer is read as text. */
  async call(
    method: string,
    pathAndQuery: string,
    opts: { body?: unknown; timeoutMs: number },
  ): Promise<PeerResponse> {
    const { res, epoch, abort } = await this.open(method, pathAndQuery, opts);
    const timer = setLongTimeout(abort, opts.timeoutMs);
    try {
      const body = await readAll(res);
      return { status: res.statusCode ?? 0, epoch, headers: res.headers, body };
    } catch (err) {
      throw new TransportError(`${method} ${pathAndQuery}: ${(err as Error).message}`);
    } finally {
      timer.clear();
    }
  }

  async json<T>(
    method: string,
    pathAndQuery: string,
    opts: { body?: unknown; timeoutMs: number },
  ): Promise<{ value: T; epoch: number | undefined }> {
    const r = await this.call(method, pathAndQuery, opts);
    if (r.status !== 200)
      throw new TransportError(`${method} ${pathAndQuery}: HTTP ${r.status}: ${errorText(r.body)}`, r.status);
    return { value: JSON.parse(r.body) as T, epoch: r.epoch };
  }
}

export function errorText(body: string): string {
  try {
    const v = JSON.parse(body) as { error?: string };
    if (typeof v.error === "string") return v.error;
  } catch {
    // not JSON: show the text
  }
  return body.slice(0, 200);
}

export async function readAll(stream: Readable): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString("utf8");
}
