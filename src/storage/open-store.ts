/**
 * From a location string to a store: folders need nothing, S3 loads the SDK lazily so that
 * commands that never touch S3 start fast.
 */
import path from "node:path";
import { parseCatalogueLocation, parseObjectLocation, type Location } from "./location.js";
import { LocalStore } from "./local-store.js";
import type { S3Options } from "./s3-store.js";
import type { BackupStore } from "./store.js";

export async function storeFor(loc: Location, s3: S3Options = {}): Promise<BackupStore> {
  if (loc.kind === "dir") return new LocalStore(loc.path);
  const { S3Store, makeS3Client } = await import("./s3-store.js");
  return new S3Store(makeS3Client(s3), loc.bucket, loc.key, s3);
}

/** A catalogue location (`--to-dir`, `--at`). */
export async function openCatalogue(text: string, s3: S3Options = {}): Promise<BackupStore> {
  return storeFor(parseCatalogueLocation(text), s3);
}

/** One object (`--to s3://bucket/key`, `--from ...`): the store of its folder and its name there. */
export async function openObject(
  text: string,
  s3: S3Options = {},
): Promise<{ store: BackupStore; key: string }> {
  const loc = parseObjectLocation(text);
  if (loc.kind === "dir")
    return { store: new LocalStore(path.dirname(loc.path)), key: path.basename(loc.path) };
  const slash = loc.key.lastIndexOf("/");
  const prefix = slash < 0 ? "" : loc.key.slice(0, slash + 1);
  const key = loc.key.slice(slash + 1);
  return { store: await storeFor({ kind: "s3", bucket: loc.bucket, key: prefix }, s3), key };
}
