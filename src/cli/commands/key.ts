/**
 * `bernstein key generate [--pq] -o F` and `bernstein key recipient F`: age identities for
 * encrypted backups. The identity (secret) is written 0600 and never printed; the recipient
 * (public) is what backup hosts get (`dr backup --recipient`, `backup.recipients`).
 */
import type { Command } from "../../vendor/commander.js";
import { existsSync } from "node:fs";
import path from "node:path";
import { generateIdentityLine, isPostQuantum, recipientFingerprint, recipientOf } from "../../dr/age/keys.js";
import { durableCreate } from "../../workspace/durable.js";
import { readIdentityFile } from "../age-keys.js";
import { ExitCode, UserError, destinationError } from "../../errors/errors.js";
import { Output } from "../output.js";

function describe(recipient: string): { recipient: string; fingerprint: string; post_quantum: boolean } {
  return { recipient, fingerprint: recipientFingerprint(recipient), post_quantum: isPostQuantum(recipient) };
}

async function writeIdentity(file: string, identity: string, recipient: string): Promise<void> {
  const text =
    `# created: ${new Date().toISOString().replace(/\.\d+Z$/, "Z")}\n` +
    `# public key: ${recipient}\n` +
    `${identity}\n`;
  try {
    await durableCreate(file, text, 0o600);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "EEXIST") {
      throw new UserError(
        `${file} already exists; not replacing an identity (a lost identity cannot be recovered)`,
        ExitCode.IO,
      );
    }
    // Where the identity goes is a destination (exit 6): a folder that is missing, or one the
    // file system refuses new entries in (/proc).
    if ((err as NodeJS.ErrnoException).code === "ENOENT" && !existsSync(path.dirname(file)))
      throw new UserError(`cannot write ${file}: folder ${path.dirname(file)} does not exist`, ExitCode.IO);
    throw destinationError(file, err) ?? err;
  }
}

export function registerKey(program: Command): void {
  const key = program.command("key").description("age identities and recipients for encrypted backups");
  key
    .command("generate")
    .description("write a new age identity (mode 0600) and print its recipient")
    .requiredOption("-o, --output <file>", "where to write the identity (must not exist)")
    .option("--pq", "a post-quantum hybrid identity (ML-KEM-768 + X25519, age1pq1... recipient)")
    .action(async (opts: { output: string; pq?: boolean }, cmd: Command) => {
      const out = Output.of(cmd);
      const { identity, recipient } = await generateIdentityLine(Boolean(opts.pq));
      await writeIdentity(opts.output, identity, recipient);
      out.result({ ok: true, identity_file: path.resolve(opts.output), ...describe(recipient) }, () => {
        out.line(recipient);
      });
      // stdout is the recipient alone (for `$(bernstein key generate ...)`); the reminder goes aside.
      if (!out.opts.json && !out.opts.quiet) {
        process.stderr.write(
          `wrote ${opts.output} (0600); keep it off the backup host, and a copy somewhere safe\n`,
        );
      }
    });
  key
    .command("recipient")
    .description("print the recipients of an identity file")
    .argument("<identity-file>", "an age identity file (mode 0600)")
    .action(async (file: string, _opts: unknown, cmd: Command) => {
      const out = Output.of(cmd);
      const identities = await readIdentityFile(file, file);
      const recipients = await Promise.all(identities.map((i) => recipientOf(i)));
      out.result({ ok: true, recipients: recipients.map(describe) }, () => {
        for (const r of recipients) out.line(r);
      });
    });
}
