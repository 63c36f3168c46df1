/**
 * The bytes an object gets when a new header replaces its first bytes (`dr rekey` of an `.age`
 * archive): `head`, then the object's own bytes from `payloadFrom` on, streamed.
 */
import type { BackupStore } from "./store.js";

export async function* headThenPayload(
  store: Pick<BackupStore, "get">,
  key: string,
  head: Buffer,
  payloadFrom: number,
): AsyncGenerator<Buffer> {
  yield head;
  for await (const chunk of await store.get(key, { start: payloadFrom })) yield chunk as Buffer;
}
