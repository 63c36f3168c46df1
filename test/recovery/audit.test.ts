import assert from "node:assert/strict";
import { appendFile, chmod, mkdir, readFile, readdir, stat, writeFile } from "node:fs/promises";
import path from "node:path";
import { test } from "node:test";
import { loadAuditKey, resolveAuditKeyPath } from "../../src/audit/key.js";
import { auditFileName, auditLine, computeAuditHmac } from "../../src/audit/entry.js";
import { AuditLog } from "../../src/audit/log.js";
import { verifyAuditLog } from "../../src/audit/verify.js";
import { prng, runCli, scratchDir } from "../helpers.js";
import { referenceKeyFile, unpackReferenceSdd } from "./support/fixture.js";

const NO_KEY_ENV = { BERNSTEIN_AUDIT_KEY_PATH: undefined };

test("audit verify --key-file passes on the Python reference audit log", async () => {
  const { dir, cleanup } = await scratchDir();
  try {
    const sdd = await unpackReferenceSdd(dir);
    const key = await referenceKeyFile(dir);
    const r = await runCli(["--sdd", sdd, "audit", "verify", "--key-file", key, "--json"], {
      env: NO_KEY_ENV,
    });
    assert.equal(r.code, 0, r.stderr + r.stdout);
    const doc = JSON.parse(r.stdout);
    assert.equal(doc.ok, true);
    assert.equal(doc.entries, 10);
    assert.deepEqual(doc.errors, []);
  } finally {
    await cleanup();
  }
});

test("one flipped byte anywhere in any line is reported at that file and line", async () => {
  const { dir, cleanup } = await scratchDir();
  try {
    const sdd = await unpackReferenceSdd(dir);
    const keyFile = await referenceKeyFile(dir);
    const key = await loadAuditKey({ keyFile, create: false });
    const file = path.join(sdd, "audit", "2026-11-27.jsonl");
    const original = await readFile(file);
    const lineStarts = [0];
    for (let i = 0; i < original.length - 1; i++) if (original[i] === 0x0a) lineStarts.push(i + 1);
    // Every line, about a third of its bytes (a different third per line), plus random flips.
    const rand = prng(99);
    const flips: [number, number][] = [];
    for (let i = 0; i < original.length; i++) {
      const line = lineStarts.filter((s) => s <= i).length;
      if (i % 3 === line % 3) flips.push([i, 0x01]);
    }
    for (let k = 0; k < 200; k++)
      flips.push([Math.floor(rand() * original.length), 1 + Math.floor(rand() * 255)]);
    let checked = 0;
    for (const [i, mask] of flips) {
      if (original[i] === 0x0a) continue;
      const line = lineStarts.filter((s) => s <= i).length;
      const damaged = Buffer.from(original);
      damaged[i] ^= mask;
      if (damaged[i] === 0x0a) continue; // a new line break is a different test
      await writeFile(file, damaged);
      const res = await verifyAuditLog(sdd + "/audit", key);
      assert.equal(res.ok, false, `byte ${i} ^ ${mask} not detected`);
      assert.ok(
        res.errors.some((e) => e.file === file && e.line === line),
        `byte ${i} ^ ${mask} (line ${line}) reported as ${JSON.stringify(res.errors)}`,
      );
      assert.ok(
        res.errors.every((e) => e.line === line),
        `only line ${line}: ${JSON.stringify(res.errors)}`,
      );
      checked++;
    }
    assert.ok(checked > 1000);
    assert.equal(new Set(flips.map(([i]) => lineStarts.filter((s) => s <= i).length)).size, 10, "every line");
    // And through the CLI: exit 1 naming file:line.
    const damaged = Buffer.from(original);
    damaged[lineStarts[6] + 30] ^= 0x01;
    await writeFile(file, damaged);
    const r = await runCli(["--sdd", sdd, "audit", "verify", "--key-file", keyFile], { env: NO_KEY_ENV });
    assert.equal(r.code, 1);
    assert.match(r.stdout, /2026-11-27\.jsonl:7: /);
  } finally {
    await cleanup();
  }
});

test("audit verify with no key anywhere exits 2, says where it looked, and leaves no key behind", async () => {
  const { dir, cleanup } = await scratchDir();
  try {
    const sdd = await unpackReferenceSdd(dir);
    const xdg = path.join(dir, "xdg");
    const home = path.join(dir, "home");
    await mkdir(home);
    for (const env of [
      { ...NO_KEY_ENV, XDG_STATE_HOME: xdg, HOME: home },
      { ...NO_KEY_ENV, XDG_STATE_HOME: undefined, HOME: home },
    ]) {
      const r = await runCli(["--sdd", sdd, "audit", "verify"], { env });
      assert.equal(r.code, 2, r.stderr);
      const expected = env.XDG_STATE_HOME
        ? path.join(xdg, "bernstein", "audit.key")
        : path.join(home, ".local", "state", "bernstein", "audit.key");
      assert.ok(r.stderr.includes(expected), r.stderr);
      assert.equal(r.stderr.trim().split("\n").length, 1, "one line, no stack");
    }
    await assert.rejects(stat(xdg), { code: "ENOENT" });
    assert.deepEqual(await readdir(home), []);
  } finally {
    await cleanup();
  }
});

test("key resolution order and refusal of a group-readable key", async () => {
  const { dir, cleanup } = await scratchDir();
  try {
    assert.equal(resolveAuditKeyPath({ keyFile: "/k", env: { BERNSTEIN_AUDIT_KEY_PATH: "/e" } }).path, "/k");
    assert.equal(
      resolveAuditKeyPath({ env: { BERNSTEIN_AUDIT_KEY_PATH: "/e", XDG_STATE_HOME: "/x" } }).path,
      "/e",
    );
    assert.equal(
      resolveAuditKeyPath({ env: { XDG_STATE_HOME: "/x", HOME: "/h" } }).path,
      "/x/bernstein/audit.key",
    );
    assert.equal(resolveAuditKeyPath({ env: { HOME: "/h" } }).path, "/h/.local/state/bernstein/audit.key");

    const env = { XDG_STATE_HOME: path.join(dir, "state") };
    const made = await loadAuditKey({ env, create: true });
    assert.equal(made.created, true);
    assert.equal((await stat(made.path)).mode & 0o777, 0o600);
    assert.equal((await stat(path.dirname(made.path))).mode & 0o777, 0o700);
    assert.match(await readFile(made.path, "utf8"), /^[0-9a-f]{64}$/);
    const again = await loadAuditKey({ env, create: true });
    assert.equal(again.created, false);
    assert.deepEqual(again.key, made.key);

    await chmod(made.path, 0o640);
    await assert.rejects(loadAuditKey({ env, create: false }), /readable by group or others/);
    const keyFile = await referenceKeyFile(dir);
    await chmod(keyFile, 0o604);
    const r = await runCli(["--sdd", dir, "audit", "verify", "--key-file", keyFile]);
    assert.notEqual(r.code, 0);
  } finally {
    await cleanup();
  }
});

test("the writer continues the Python chain across day files, and a torn last line is reported precisely", async () => {
  const { dir, cleanup } = await scratchDir();
  try {
    const sdd = await unpackReferenceSdd(dir);
    const keyFile = await referenceKeyFile(dir);
    const key = await loadAuditKey({ keyFile, create: false });
    const auditDir = path.join(sdd, "audit");
    const log = await AuditLog.open(auditDir, key);
    const e = await log.append({
      event_type: "checkpoint.written",
      actor: "bernstein",
      resource_type: "checkpoint",
      resource_id: "cp-1",
      details: { cost: 1.5, note: "caf\u00e9 \ud83d\ude80" },
    });
    const first = await verifyAuditLog(auditDir, key);
    assert.deepEqual(first.errors, []);
    assert.equal(first.entries, 11);
    assert.equal(first.last_hmac, e.hmac);

    // An interrupted append leaves a torn last line in the file the writer uses.
    const today = path.join(auditDir, auditFileName(e.timestamp));
    const linesBefore = (await readFile(today, "utf8")).split("\n").length - 1;
    await appendFile(today, '{"actor": "x", "details": {}, "event_');
    const withTorn = await verifyAuditLog(auditDir, key);
    assert.equal(withTorn.ok, false);
    assert.equal(withTorn.errors.length, 1);
    assert.equal(withTorn.errors[0].file, today);
    assert.equal(withTorn.errors[0].line, linesBefore + 1);
    assert.match(withTorn.errors[0].message, /torn last line/);
    assert.equal(withTorn.entries, 11, "valid entries kept");
    const cli = await runCli(["--sdd", sdd, "audit", "verify", "--key-file", keyFile], { env: NO_KEY_ENV });
    assert.equal(cli.code, 1);
    assert.ok(cli.stdout.includes(`${path.basename(today)}:${linesBefore + 1}: torn last line`), cli.stdout);

    // The next writer keeps the fragment on its own line and chains onto the last valid entry.
    const log2 = await AuditLog.open(auditDir, key);
    assert.equal(log2.lastHmacValue, e.hmac);
    await log2.append({ event_type: "x", actor: "a", resource_type: "r", resource_id: "1", details: {} });
    const text = await readFile(today, "utf8");
    assert.ok(text.includes('{"actor": "x", "details": {}, "event_\n'), "fragment kept on its own line");
    const after = await verifyAuditLog(auditDir, key);
    assert.equal(after.entries, 12);
    assert.equal(after.errors.length, 1, JSON.stringify(after.errors));
    assert.equal(after.errors[0].line, linesBefore + 1);
    assert.match(after.errors[0].message, /not valid JSON/);

    // One chain across day files: a later day file continues from the last entry of the earlier one.
    const later = path.join(auditDir, "2999-01-01.jsonl");
    const next = await AuditLog.open(auditDir, key);
    const chained = {
      timestamp: "2999-01-01T00:00:00.000000Z",
      event_type: "x",
      actor: "a",
      resource_type: "r",
      resource_id: "2",
      details: {},
      prev_hmac: next.lastHmacValue,
    };
    await writeFile(later, auditLine({ ...chained, hmac: computeAuditHmac(key.key, chained) }) + "\n");
    const across = await verifyAuditLog(auditDir, key);
    assert.equal(across.entries, 13);
    assert.equal(across.errors.length, 1);
    const broken = { ...chained, prev_hmac: "0".repeat(64) };
    await writeFile(later, auditLine({ ...broken, hmac: computeAuditHmac(key.key, broken) }) + "\n");
    const cut = await verifyAuditLog(auditDir, key);
    assert.ok(cut.errors.some((x) => x.file === later && x.line === 1 && /chain break/.test(x.message)));
  } finally {
    await cleanup();
  }
});

test("a torn line at the end of an earlier day file is reported; the chain must still continue across it", async () => {
  const { dir, cleanup } = await scratchDir();
  try {
    const keyFile = await referenceKeyFile(dir);
    const key = await loadAuditKey({ keyFile, create: false });
    const auditDir = path.join(dir, "audit");
    await mkdir(auditDir);
    let prev = "0".repeat(64);
    const entry = (day: string, n: number) => {
      const unsigned = {
        timestamp: `${day}T00:00:0${n}.000000Z`,
        event_type: "e",
        actor: "a",
        resource_type: "r",
        resource_id: String(n),
        details: {},
        prev_hmac: prev,
      };
      const full = { ...unsigned, hmac: computeAuditHmac(key.key, unsigned) };
      prev = full.hmac;
      return auditLine(full) + "\n";
    };
    const a = path.join(auditDir, "2026-01-01.jsonl");
    const b = path.join(auditDir, "2026-01-02.jsonl");
    await writeFile(a, entry("2026-01-01", 1) + entry("2026-01-01", 2) + '{"actor": "a", "det');
    await writeFile(b, entry("2026-01-02", 3));
    const res = await verifyAuditLog(auditDir, key);
    assert.equal(res.entries, 3);
    assert.deepEqual(
      res.errors.map((e) => [e.file, e.line]),
      [[a, 3]],
    );
    assert.match(res.errors[0].message, /torn last line/);
    // If the next file does not continue from the last readable entry, that is a break too.
    prev = "1".repeat(64);
    await writeFile(b, entry("2026-01-02", 3));
    const broken = await verifyAuditLog(auditDir, key);
    assert.deepEqual(
      broken.errors.map((e) => [e.file, e.line]),
      [
        [a, 3],
        [b, 1],
      ],
    );
    assert.match(broken.errors[1].message, /chain break/);
  } finally {
    await cleanup();
  }
});
