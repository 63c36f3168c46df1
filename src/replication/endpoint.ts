/**
 * Where a running `replicate serve`/`follow` (or `start --replication-listen`) of this workspace
 * answers: `.sdd/runtime/replication/endpoint.json` {pid, url, token_file, role}. `dr status`
 * reads it to ask the live process for the in-memory parts (lag, health).
 */
import { readFile, unlink } from "node:fs/promises";
import path from "node:path";
import { atomicWriteFile, durableMkdir } from "../workspace/durable.js";
import type { Workspace } from "../workspace/layout.js";
import { isProcessAlive } from "../workspace/process.js";
import { replicationDir } from "./epoch.js";

export interface EndpointRecord {
  pid: number;
  url: string;
  token_file: string | null;
  role: "leader" | "follower";
  tls_ca?: string | null;
}

function file(ws: Workspace): string {
  return path.join(replicationDir(ws), "endpoint.json");
}

export async function writeEndpoint(ws: Workspace, rec: EndpointRecord): Promise<void> {
  await durableMkdir(replicationDir(ws));
  await atomicWriteFile(file(ws), JSON.stringify(rec, null, 2) + "\n");
}

/** The endpoint of a live process of this workspace, or null. */
export async function readLiveEndpoint(ws: Workspace): Promise<EndpointRecord | null> {
  try {
    const rec = JSON.parse(await readFile(file(ws), "utf8")) as EndpointRecord;
    return typeof rec.pid === "number" && isProcessAlive(rec.pid) ? rec : null;
  } catch {
    return null;
  }
}

export async function removeEndpoint(ws: Workspace, pid = process.pid): Promise<void> {
  try {
    const rec = JSON.parse(await readFile(file(ws), "utf8")) as EndpointRecord;
    if (rec.pid === pid) await unlink(file(ws));
  } catch {
    // already gone
  }
}
