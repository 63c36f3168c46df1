/**
 * Parses where backups go: `s3://bucket/key` (one object), `s3://bucket/prefix/` (a catalogue
 * location) or a local path (a file or a folder).
 */
import path from "node:path";
import { ExitCode, UserError } from "../errors/errors.js";

export type Location = { kind: "s3"; bucket: string; key: string } | { kind: "dir"; path: string };

// S3 bucket naming rules (the subset that matters for a clear error): 3-63 chars, lower case,
// digits, dots and hyphens.
const BUCKET_RE = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;

export function isS3Url(text: string): boolean {
  return /^s3:\/\//i.test(text);
}

function parseS3(text: string): { bucket: string; key: string } {
  const rest = text.slice("s3://".length);
  const slash = rest.indexOf("/");
  const bucket = slash < 0 ? rest : rest.slice(0, slash);
  const key = slash < 0 ? "" : rest.slice(slash + 1);
  if (bucket === "")
    throw new UserError(`${text}: missing bucket name (expected s3://bucket/key)`, ExitCode.USAGE);
  if (!BUCKET_RE.test(bucket)) {
    throw new UserError(`${text}: "${bucket}" is not a valid S3 bucket name`, ExitCode.USAGE);
  }
  if (
    key
      .split("/")
      .some((part, i, all) => (part === "" && i < all.length - 1) || part === "." || part === "..")
  ) {
    throw new UserError(`${text}: the key must not contain empty, "." or ".." segments`, ExitCode.USAGE);
  }
  return { bucket, key };
}

/** A single object target or source: `s3://bucket/key` or a file path. */
/** `text` as a location that means the same from any folder: an s3:// URL as it is, a path made absolute. */
export function absoluteLocation(text: string): string {
  return isS3Url(text) ? text : path.resolve(text);
}

export function parseObjectLocation(text: string): Location {
  if (isS3Url(text)) {
    const { bucket, key } = parseS3(text);
    if (key === "" || key.endsWith("/")) {
      throw new UserError(
        `${text}: an S3 URL needs an object key (s3://${bucket}/path/backup.tar.gz); ` +
          `use --to-dir / --at for a catalogue location`,
        ExitCode.USAGE,
      );
    }
    return { kind: "s3", bucket, key };
  }
  if (text === "") throw new UserError("empty location", ExitCode.USAGE);
  return { kind: "dir", path: path.resolve(text) };
}

/**
 * A catalogue location (`--to-dir`, `--at`): a folder or `s3://bucket/prefix/`.
 * The S3 key is normalised to a prefix ending in "/" (or "" for the bucket root).
 */
export function parseCatalogueLocation(text: string): Location {
  if (isS3Url(text)) {
    const { bucket, key } = parseS3(text);
    return { kind: "s3", bucket, key: key === "" || key.endsWith("/") ? key : `${key}/` };
  }
  if (text === "") throw new UserError("empty location", ExitCode.USAGE);
  return { kind: "dir", path: path.resolve(text) };
}

export function formatLocation(loc: Location): string {
  return loc.kind === "s3" ? `s3://${loc.bucket}/${loc.key}` : loc.path;
}
