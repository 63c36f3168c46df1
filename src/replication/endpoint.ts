/**
 * Where a running `replicate serve`/`follow` (or `start --replication-listen`) of this workspace
 * answers: `.sdd/runtime/replication/endpoint.json` {pid, url, token_file, role, host, sdd}. `dr status`
 * reads it to ask the live process for the in-memory parts (lag, health).
 */
import { readFile, unlink } from "node:fs/promises";
import path from "node:path";
import { atomicWriteFile, durableMkdir } from "../workspace/durable.js";
import type { Workspace } from "../workspace/layout.js";
import { isHome, isProcessAlive, processHome, type ProcessHome } from "../workspace/process.js";
import { replicationDir } from "./epoch.js";

/** `host` and `sdd` (ProcessHome): where the process runs; absent in records written before they were kept. */
export interface EndpointRecord extends ProcessHome {
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
  await atomicWriteFile(file(ws), JSON.stringify({ ...rec, ...processHome(ws.root) }, null, 2) + "\n");
}

/** The endpoint of a live process of this workspace, or null (a record copied from another folder or host: null). */
export async function readLiveEndpoint(ws: Workspace): Promise<EndpointRecord | null> {
  try {
    const rec = JSON.parse(await readFile(file(ws), "utf8")) as EndpointRecord;
    return typeof rec.pid === "number" && isHome(rec, ws.root) && isProcessAlive(rec.pid) ? rec : null;
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
