/**
 * The thread of ArchiverThread (archiver-thread.ts): builds the Archiver from the spec it was
 * started with and answers the calls of the thread that hosts it, one message each.
 */
import { parentPort, workerData } from "node:worker_threads";
import { storeFor } from "../storage/open-store.js";
import { parseCatalogueLocation } from "../storage/location.js";
import { Workspace } from "../workspace/layout.js";
import { Archiver, ArchiverStopped } from "./archiver.js";
import type { ArchiverThreadSpec, ThreadCall, ThreadMessage } from "./archiver-thread.js";

type Control = { op: "start" | "stop" | "close" };

const port = parentPort!;
const post = (m: ThreadMessage): void => port.postMessage(m);
const exitCodeOf = (err: unknown): number | undefined => (err as { exitCode?: number }).exitCode;
const messageOf = (err: unknown): string => (err instanceof Error ? err.message : String(err));

const { sddDir, to, s3, ...options } = workerData as ArchiverThreadSpec;
const archiver = new Archiver({
  ...options,
  ws: new Workspace(sddDir),
  store: await storeFor(parseCatalogueLocation(to), s3),
  log: (event) => post({ event }),
});
async function answer(c: ThreadCall): Promise<unknown> {
  switch (c.op) {
    case "started":
      return archiver.health.started();
    case "stopped":
      return archiver.health.stopped();
    case "status":
      return archiver.health.snapshot();
    case "step":
      return archiver.step();
    case "finish":
      return archiver.finish();
    case "gate":
      return archiver.shippedThrough(c.pos);
  }
}

port.on("message", (m: ThreadCall | Control) => {
  if (!("id" in m)) {
    if (m.op === "start") {
      archiver.start((err) => post({ fatal: messageOf(err), exitCode: exitCodeOf(err) }));
    } else if (m.op === "stop") archiver.stop();
    // After the cycle in flight (the answers to the host's calls are sent), the thread ends.
    else void archiver.halt().then(() => process.exit(0));
    return;
  }
  answer(m).then(
    (value) => post({ id: m.id, ok: true, value }),
    (err: unknown) =>
      post({
        id: m.id,
        ok: false,
        message: messageOf(err),
        stopped: err instanceof ArchiverStopped,
        exitCode: exitCodeOf(err),
      }),
  );
});
