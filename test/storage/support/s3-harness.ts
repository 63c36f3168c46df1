/**
 * A real S3-compatible server for tests: s3rver (npm) on 127.0.0.1 with a random port and a
 * scratch folder, behind a real HTTP front proxy on another random port that
 *
 *  - injects faults (HTTP status codes or connection resets) per S3 operation,
 *  - validates `x-amz-checksum-sha256` on PutObject/UploadPart (s3rver ignores the header;
 *    a mismatch answers 400 BadDigest like AWS does, and a PutObject's answer states it back as
 *    AWS's does unless a test turns that off: `setChecksumAnswer`), and the payload hash SigV4 signs
 *    (`x-amz-content-sha256` when it is one: 400 XAmzContentSHA256Mismatch like AWS),
 *  - implements AbortMultipartUpload and ListMultipartUploads, which s3rver 3.7.1 lacks,
 *    on s3rver's own upload folders (`<dir>/<bucket>/._S3rver_uploads/<uploadId>`);
 *  - answers UploadPartCopy, which s3rver refuses (501 NotImplemented), when a test turns it on
 *    (`setPartCopy`): a HEAD (x-amz-copy-source-if-match against the ETag) and a ranged GET of
 *    the source from s3rver, then an UploadPart of those bytes to s3rver.
 *
 * Everything else (object bytes, metadata, multipart assembly, listing, access key checks) is
 * s3rver's. Clients must use access key S3RVER / secret S3RVER.
 *
 * With `server: "moto"` the upstream is moto's S3 instead (`./moto.ts`), which implements all of
 * the above itself: the proxy then only counts requests and injects faults.
 */
import { createHash } from "node:crypto";
import { readFile, readdir, rm } from "node:fs/promises";
import http from "node:http";
import type { AddressInfo } from "node:net";
import os from "node:os";
import path from "node:path";
import { mkdtemp } from "node:fs/promises";
import S3rver from "s3rver";
import { startMoto, type MotoServer } from "./moto.js";

export type S3Operation =
  | "PutObject"
  | "UploadPart"
  | "UploadPartCopy"
  | "CreateMultipartUpload"
  | "CompleteMultipartUpload"
  | "AbortMultipartUpload"
  | "ListMultipartUploads"
  | "HeadObject"
  | "GetObject"
  | "DeleteObject"
  | "ListObjects"
  | "Other";

/**
 * A fault for the nth (1-based) request of an operation: an HTTP status, a reset before any
 * answer, "cut" (the real answer's headers and the first half of its body, then the connection
 * closes), "stall" (the same half, then nothing more while the connection stays open), "hold"
 * (the request is read and never answered), or nothing. "stall" and "hold" keep a client busy
 * mid-transfer for as long as a test needs (to signal it there). "lost" (PutObject only): the
 * object is stored, then the connection closes instead of the answer (a put that succeeded
 * although its client saw it fail). `{ after }`: the request waits until `after` settles, then
 * goes on as usual (a test makes something happen in between, such as another writer's put).
 */
export type Fault = number | "reset" | "cut" | "stall" | "hold" | "lost" | { after: Promise<unknown> };
/** `key`: the object key the request names (after the bucket; "" for none). */
export type FaultRule = (op: S3Operation, nth: number, key: string) => Fault | undefined;

export interface S3Harness {
  /** The proxy's URL: point clients here. */
  endpoint: string;
  /** The s3rver folder ("" with moto). */
  dir: string;
  env: Record<string, string>;
  setFault(rule: FaultRule | undefined): void;
  /** Whether UploadPartCopy is answered (by the proxy) or refused 501 (by s3rver, the default); s3rver only. */
  setPartCopy(on: boolean): void;
  /**
   * Whether a PutObject's answer states the checksum the proxy validated (`x-amz-checksum-sha256`,
   * as AWS answers; the default) or not, as a store that ignores the header (s3rver alone) answers.
   * s3rver only.
   */
  setChecksumAnswer(on: boolean): void;
  /** Requests seen per operation since the last reset. */
  counts: Map<S3Operation, number>;
  /** The UploadPartCopy requests seen since the last reset, as their headers name them. */
  partCopies: PartCopyRequest[];
  /** The requests answered "hold", with the bodies their clients sent (oldest first). */
  held: { op: S3Operation; key: string; body: Buffer }[];
  resetCounts(): void;
  /** Upload ids still pending in a bucket (s3rver's on-disk state; moto's ListMultipartUploads). */
  pendingUploads(bucket: string): Promise<string[]>;
  close(): Promise<void>;
}

export interface PartCopyRequest {
  /** x-amz-copy-source, decoded: "bucket/key". */
  source: string;
  /** x-amz-copy-source-range: "bytes=FIRST-LAST". */
  range?: string;
  /** x-amz-copy-source-if-match: the ETag the source must still have. */
  ifMatch?: string;
}

const headerOf = (req: http.IncomingMessage, name: string): string | undefined => {
  const v = req.headers[name];
  return typeof v === "string" ? v : undefined;
};

function classify(method: string, url: URL, headers: http.IncomingHttpHeaders): S3Operation {
  const q = url.searchParams;
  const segments = url.pathname.split("/").filter(Boolean);
  const hasKey = segments.length > 1;
  switch (method) {
    case "PUT":
      if (q.has("uploadId")) return "x-amz-copy-source" in headers ? "UploadPartCopy" : "UploadPart";
      return hasKey ? "PutObject" : "Other";
    case "POST":
      return q.has("uploads")
        ? "CreateMultipartUpload"
        : q.has("uploadId")
          ? "CompleteMultipartUpload"
          : "Other";
    case "DELETE":
      return q.has("uploadId") ? "AbortMultipartUpload" : hasKey ? "DeleteObject" : "Other";
    case "HEAD":
      return hasKey ? "HeadObject" : "Other";
    case "GET":
      if (!hasKey) return q.has("uploads") ? "ListMultipartUploads" : "ListObjects";
      return "GetObject";
    default:
      return "Other";
  }
}

function xmlError(res: http.ServerResponse, status: number, code: string, message: string): void {
  const body = `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${code}</Code><Message>${message}</Message><RequestId>harness</RequestId></Error>`;
  res.writeHead(status, { "content-type": "application/xml", "content-length": Buffer.byteLength(body) });
  res.end(body);
}

async function readBody(req: http.IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

/** One unsigned request to s3rver (it lets anonymous requests through). */
function ask(
  upstream: { host: string; port: number },
  method: string,
  pathAndQuery: string,
  headers: http.OutgoingHttpHeaders = {},
  body?: Buffer,
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const r = http.request({ ...upstream, agent: false, method, path: pathAndQuery, headers }, (res) => {
      readBody(res).then(
        (b) => resolve({ status: res.statusCode ?? 502, headers: res.headers, body: b }),
        reject,
      );
    });
    r.on("error", reject);
    r.end(body);
  });
}

/** UploadPartCopy done with what s3rver has: HEAD and ranged GET of the source, UploadPart of the bytes. */
async function copyPart(
  upstream: { host: string; port: number },
  req: http.IncomingMessage,
  url: URL,
  res: http.ServerResponse,
): Promise<void> {
  const source = `/${decodeURIComponent(String(req.headers["x-amz-copy-source"])).replace(/^\//, "")}`;
  const sourcePath = source.split("/").map(encodeURIComponent).join("/");
  const head = await ask(upstream, "HEAD", sourcePath);
  if (head.status !== 200) return xmlError(res, 404, "NoSuchKey", "The specified key does not exist.");
  const ifMatch = req.headers["x-amz-copy-source-if-match"];
  if (ifMatch !== undefined && ifMatch !== head.headers.etag)
    return xmlError(res, 412, "PreconditionFailed", "At least one of the preconditions did not hold");
  const range = req.headers["x-amz-copy-source-range"];
  const got = await ask(upstream, "GET", sourcePath, typeof range === "string" ? { range } : {});
  if (got.status !== 200 && got.status !== 206)
    return xmlError(res, got.status, "InvalidRange", "The requested range is not satisfiable");
  const put = await ask(
    upstream,
    "PUT",
    url.pathname + url.search,
    { "content-length": got.body.length },
    got.body,
  );
  if (put.status !== 200) {
    res.writeHead(put.status, put.headers).end(put.body);
    return;
  }
  const checksum = createHash("sha256").update(got.body).digest("base64");
  const body = `<?xml version="1.0" encoding="UTF-8"?>\n<CopyPartResult><ETag>${String(put.headers.etag)}</ETag><ChecksumSHA256>${checksum}</ChecksumSHA256></CopyPartResult>`;
  res
    .writeHead(200, { "content-type": "application/xml", "content-length": Buffer.byteLength(body) })
    .end(body);
}

/**
 * Waits until s3rver has written the object that a PutObject or CompleteMultipartUpload at
 * `url` made. s3rver answers once it has hashed the bytes, before its file write is done, so a
 * read right after could see part of the object; S3 itself is read-after-write consistent.
 * Written = the object file's md5 is the one s3rver recorded beside it.
 */
async function objectWritten(dir: string, url: URL): Promise<void> {
  const [bucket, ...key] = url.pathname.split("/").filter(Boolean).map(decodeURIComponent);
  const parts = key.join("/").split("/");
  const file = path.join(dir, bucket!, ...parts.slice(0, -1), `${parts.at(-1)}._S3rver_object`);
  for (const t0 = Date.now(); Date.now() - t0 < 30_000; await new Promise((r) => setTimeout(r, 10))) {
    const recorded = await readFile(`${file}.md5`, "utf8").catch(() => undefined);
    if (recorded === undefined) continue;
    const actual = createHash("md5")
      .update(await readFile(file).catch(() => Buffer.alloc(0)))
      .digest("hex");
    if (actual === recorded.trim()) {
      return;
    }
    if (process.env.HARNESS_DEBUG) process.stderr.write(`harness: ${file} not written yet\n`);
  }
  throw new Error(`s3rver did not finish writing ${url.pathname}`);
}

/** s3rver on a random port with a scratch folder and the buckets. */
async function startS3rver(buckets: string[]): Promise<{ server: S3rver; dir: string; port: number }> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "bernstein-s3rver-"));
  const server = new S3rver({
    address: "127.0.0.1",
    port: 0,
    silent: true,
    directory: dir,
    configureBuckets: buckets.map((name) => ({ name, configs: [] })),
  });
  const addr = (await server.run()) as AddressInfo;
  return { server, dir, port: addr.port };
}

async function startMotoWith(buckets: string[]): Promise<MotoServer> {
  const moto = await startMoto();
  try {
    for (const b of buckets) await moto.createBucket(b);
    return moto;
  } catch (err) {
    await moto.stop();
    throw err;
  }
}

export async function startS3Harness(
  options: { buckets?: string[]; server?: "s3rver" | "moto" } = {},
): Promise<S3Harness> {
  const moto = options.server === "moto" ? await startMotoWith(options.buckets ?? []) : undefined;
  const s3rver = moto ? undefined : await startS3rver(options.buckets ?? []);
  const dir = s3rver?.dir ?? "";
  const upstream = { host: "127.0.0.1", port: moto?.port ?? s3rver!.port };
  const counts = new Map<S3Operation, number>();
  const partCopies: PartCopyRequest[] = [];
  const held: S3Harness["held"] = [];
  let fault: FaultRule | undefined;
  let partCopy = false;
  let checksumAnswer = true;
  const uploadsDir = (bucket: string) => path.join(dir, bucket, "._S3rver_uploads");

  const proxy = http.createServer((req, res) => {
    void (async () => {
      const url = new URL(req.url ?? "/", "http://harness");
      const op = classify(req.method ?? "GET", url, req.headers);
      const nth = (counts.get(op) ?? 0) + 1;
      counts.set(op, nth);
      if (op === "UploadPartCopy")
        partCopies.push({
          source: decodeURIComponent(headerOf(req, "x-amz-copy-source") ?? ""),
          range: headerOf(req, "x-amz-copy-source-range"),
          ifMatch: headerOf(req, "x-amz-copy-source-if-match"),
        });
      const key = url.pathname.split("/").filter(Boolean).slice(1).map(decodeURIComponent).join("/");
      const ruled = fault?.(op, nth, key);
      if (typeof ruled === "object") await ruled.after;
      const injected = typeof ruled === "object" ? undefined : ruled;
      if (injected !== undefined && injected !== "cut" && injected !== "stall" && injected !== "lost") {
        if (injected === "reset") {
          req.socket.destroy();
          return;
        }
        if (injected === "hold") {
          held.push({ op, key, body: await readBody(req) });
          return;
        }
        await readBody(req);
        xmlError(
          res,
          injected,
          injected === 503 ? "ServiceUnavailable" : "InternalError",
          "injected by the test harness",
        );
        return;
      }
      const bucket = url.pathname.split("/").filter(Boolean)[0] ?? "";
      if (op === "UploadPartCopy" && partCopy) return copyPart(upstream, req, url, res);
      if (op === "AbortMultipartUpload" && !moto) {
        const id = url.searchParams.get("uploadId") ?? "";
        const target = path.join(uploadsDir(bucket), path.basename(id));
        const exists =
          id !== "" &&
          (await readdir(target)
            .then(() => true)
            .catch(() => false));
        if (!exists) return xmlError(res, 404, "NoSuchUpload", "The specified upload does not exist");
        await rm(target, { recursive: true, force: true });
        res.writeHead(204).end();
        return;
      }
      if (op === "ListMultipartUploads" && !moto) {
        const ids = await readdir(uploadsDir(bucket)).catch(() => [] as string[]);
        const body =
          `<?xml version="1.0" encoding="UTF-8"?>\n<ListMultipartUploadsResult><Bucket>${bucket}</Bucket>` +
          ids.map((id) => `<Upload><UploadId>${id}</UploadId></Upload>`).join("") +
          `<IsTruncated>false</IsTruncated></ListMultipartUploadsResult>`;
        res.writeHead(200, { "content-type": "application/xml" }).end(body);
        return;
      }
      let body: Buffer | undefined;
      // One sha256 of the body serves both checks (the checksum in base64, the signed hash in hex).
      let digest: Buffer | undefined;
      const sha256Of = async () => {
        body ??= await readBody(req);
        return (digest ??= createHash("sha256").update(body).digest());
      };
      const claimed = req.headers["x-amz-checksum-sha256"];
      let validated: string | undefined;
      if ((op === "PutObject" || op === "UploadPart") && typeof claimed === "string") {
        const actual = (await sha256Of()).toString("base64");
        if (actual !== claimed) {
          xmlError(res, 400, "BadDigest", "The SHA256 you specified did not match the calculated checksum.");
          return;
        }
        validated = actual;
      }
      const signed = req.headers["x-amz-content-sha256"];
      if (
        (op === "PutObject" || op === "UploadPart") &&
        typeof signed === "string" &&
        /^[0-9a-f]{64}$/.test(signed)
      ) {
        if ((await sha256Of()).toString("hex") !== signed) {
          xmlError(
            res,
            400,
            "XAmzContentSHA256Mismatch",
            "The provided 'x-amz-content-sha256' header does not match what was computed.",
          );
          return;
        }
      }
      const up = http.request(
        { ...upstream, agent: false, method: req.method, path: req.url, headers: req.headers },
        (upRes) => {
          if ((op === "PutObject" || op === "CompleteMultipartUpload") && upRes.statusCode === 200) {
            void (async () => {
              const answer = await readBody(upRes);
              if (!moto) await objectWritten(dir, url);
              const stated =
                op === "PutObject" && validated && checksumAnswer && !moto
                  ? { "x-amz-checksum-sha256": validated }
                  : {};
              if (injected === "lost") res.socket?.destroy();
              else res.writeHead(200, { ...upRes.headers, ...stated }).end(answer);
            })().catch(() => res.destroy());
            return;
          }
          res.writeHead(upRes.statusCode ?? 502, upRes.headers);
          if (injected !== "cut" && injected !== "stall") {
            upRes.pipe(res);
            return;
          }
          const end = () => {
            if (injected === "cut") res.socket?.destroy();
          };
          let left = Math.floor(Number(upRes.headers["content-length"] ?? 0) / 2);
          if (left <= 0) end();
          upRes.on("data", (d: Buffer) => {
            if (left <= 0) return;
            const part = d.subarray(0, left);
            left -= part.length;
            res.write(part, () => {
              if (left <= 0) end();
            });
          });
        },
      );
      up.on("error", () => res.destroy());
      if (body !== undefined) up.end(body);
      else req.pipe(up);
    })().catch(() => res.destroy());
  });
  // A server closes an idle kept-alive connection after keepAliveTimeout (5 s by default); a client
  // whose event loop is busy past the 1 s margin Node keeps can send its next request on it as it
  // closes and read ECONNRESET. A request that a test runs with --retries 0 then fails for a reason
  // no test is about. Idle connections stay open for a minute here, and every request to the
  // server behind (above) opens its own connection.
  proxy.keepAliveTimeout = 60_000;
  await new Promise<void>((resolve) => proxy.listen(0, "127.0.0.1", resolve));
  const endpoint = `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`;
  return {
    endpoint,
    dir,
    env: {
      BERNSTEIN_S3_ENDPOINT: endpoint,
      AWS_ACCESS_KEY_ID: "S3RVER",
      AWS_SECRET_ACCESS_KEY: "S3RVER",
      AWS_REGION: "us-east-1",
      BERNSTEIN_S3_BACKOFF_MS: "5",
      AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: "true",
    },
    counts,
    partCopies,
    held,
    setFault(rule) {
      fault = rule;
    },
    setPartCopy(on) {
      if (moto) throw new Error("moto answers UploadPartCopy itself");
      partCopy = on;
    },
    setChecksumAnswer(on) {
      if (moto) throw new Error("moto answers checksums itself");
      checksumAnswer = on;
    },
    resetCounts() {
      counts.clear();
      partCopies.length = 0;
    },
    async pendingUploads(bucket) {
      if (moto) return moto.pendingUploads(bucket);
      return readdir(uploadsDir(bucket)).catch(() => []);
    },
    async close() {
      proxy.closeAllConnections();
      await new Promise<void>((resolve) => proxy.close(() => resolve()));
      if (moto) return moto.stop();
      await s3rver!.server.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** Fails the first `times` requests of `op` with `status` (or a reset). */
export function failFirst(op: S3Operation | "*", times: number, status: Fault = 503): FaultRule {
  let matched = 0;
  return (seen) => {
    if (op !== "*" && seen !== op) return undefined;
    matched++;
    return matched <= times ? status : undefined;
  };
}

/** Fails every request of `op` (or all with "*"). */
export function failAlways(op: S3Operation | "*", status: Fault = 503): FaultRule {
  return (seen) => (op === "*" || seen === op ? status : undefined);
}
