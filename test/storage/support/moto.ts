/**
 * moto's S3 (`moto_server`, Python) for tests: a second real S3 implementation beside s3rver,
 * and one that implements UploadPartCopy with x-amz-copy-source-range (s3rver answers 501).
 * No Debian or npm package carries it, so a machine has it only if its image does: the tests
 * that use it skip, saying why, where `moto_server` is absent.
 *
 * It binds port 0 of 127.0.0.1 itself and announces the port it got on stderr ("Running on
 * http://127.0.0.1:PORT"); readiness is then polled with a request, never waited out.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import http from "node:http";
import { waitFor } from "../../helpers.js";

let missing: string | false | undefined;

/**
 * Why the moto tests are skipped here, or false where `moto_server` runs. Asked only by the files
 * that use moto, once: `moto_server --help` starts Python and imports moto (over a second of CPU),
 * which every file importing the S3 harness would otherwise pay at load.
 */
export function motoMissing(): string | false {
  missing ??=
    spawnSync("moto_server", ["--help"], { stdio: "ignore" }).status === 0
      ? false
      : "moto_server is not installed (Python moto[server]; no Debian or npm package has it): the tests against moto are skipped";
  return missing;
}

export interface MotoServer {
  host: string;
  port: number;
  /** Creates a bucket (moto takes unsigned requests). */
  createBucket(name: string): Promise<void>;
  /** Upload ids of the multipart uploads still pending in a bucket (ListMultipartUploads). */
  pendingUploads(bucket: string): Promise<string[]>;
  stop(): Promise<void>;
}

const HOST = "127.0.0.1";

/** One unsigned request to moto: its status and body. */
function request(port: number, method: string, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const r = http.request({ host: HOST, port, method, path }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString() }));
      res.on("error", reject);
    });
    r.on("error", reject);
    r.end();
  });
}

/** The port moto announces on stderr; its stderr is drained for good after that (one line a request). */
async function announcedPort(child: ChildProcess, exited: Promise<unknown>): Promise<number> {
  let seen = "";
  child.stderr!.setEncoding("utf8");
  child.stderr!.on("data", (d: string) => {
    if (seen.length < 64 * 1024) seen += d;
  });
  const match = await waitFor(
    "moto_server to announce its port",
    () => /Running on http:\/\/[\d.]+:(\d+)/.exec(seen) ?? undefined,
    {
      exited,
    },
  ).catch((err: Error) => {
    throw new Error(`${err.message}: ${seen.trim()}`);
  });
  return Number(match[1]);
}

export async function startMoto(): Promise<MotoServer> {
  // Its own process group: a launcher (pyenv's shim) may sit between us and the Python process.
  const child = spawn("moto_server", ["-H", HOST, "-p", "0"], {
    stdio: ["ignore", "ignore", "pipe"],
    detached: true,
  });
  const exited = once(child, "exit");
  const stop = async (): Promise<void> => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    process.kill(-child.pid!, "SIGTERM");
    await exited;
  };
  try {
    const port = await announcedPort(child, exited);
    await waitFor(
      "moto_server to answer",
      () =>
        request(port, "GET", "/").then(
          (r) => r.status === 200,
          () => false,
        ),
      { exited },
    );
    return {
      host: HOST,
      port,
      async createBucket(name) {
        const r = await request(port, "PUT", `/${encodeURIComponent(name)}`);
        if (r.status !== 200) throw new Error(`moto: creating bucket ${name}: ${r.status} ${r.body}`);
      },
      async pendingUploads(bucket) {
        const r = await request(port, "GET", `/${encodeURIComponent(bucket)}?uploads`);
        if (r.status !== 200) throw new Error(`moto: ListMultipartUploads ${bucket}: ${r.status} ${r.body}`);
        return [...r.body.matchAll(/<UploadId>([^<]*)<\/UploadId>/g)].map((m) => m[1]!);
      },
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}
