/**
 * The connection limits of a replication endpoint and their defaults: what `start` and `replicate`
 * declare as flags, apart from the server that applies them (server.ts), so that declaring them
 * loads nothing else.
 */

/** What one connection may hold, and how many there may be (docs/replication.md). */
export interface ConnectionLimits {
  /** From a request's first byte (a connection's start) to the end of its headers; also the TLS handshake. */
  headerTimeoutMs: number;
  /** From a request's first byte to the end of its body. Not the answer: a long-poll may wait longer. */
  requestTimeoutMs: number;
  /** How long a kept-alive connection may sit idle between an answer and the next request. */
  keepAliveTimeoutMs: number;
  /** Open connections in all; more are closed as they arrive. */
  maxConnections: number;
  /** Open connections from one client address. */
  maxConnectionsPerAddress: number;
}

/**
 * A peer sends its headers in one packet and its bodies are small JSON (≤ 1 MiB), so 10 s and
 * 30 s are generous on any link between regions; 15 s of idle keep-alive outlives the pauses of a
 * follower's loop and of the leader's probes (default 1 s) so their connections are reused. A
 * follower holds at most a handful of connections (long-poll, ack, snapshot, status) and its
 * client at most 16 per leader: 32 per address leaves room for several nodes behind one address,
 * and 128 in all stays well under the usual 1,024 descriptors an orchestrator runs with.
 */
export const DEFAULT_LIMITS: ConnectionLimits = {
  headerTimeoutMs: 10_000,
  requestTimeoutMs: 30_000,
  keepAliveTimeoutMs: 15_000,
  maxConnections: 128,
  maxConnectionsPerAddress: 32,
};
