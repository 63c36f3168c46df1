import assert from "node:assert/strict";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { test } from "node:test";
import { Peer, readAll } from "../../src/replication/client.js";

test(
  "an answer whose connection drops before it is read fails its reader instead of hanging",
  { timeout: 20_000 },
  async (t) => {
    // Headers and a tenth of the promised body, then the connection closes.
    const server = http.createServer((_req, res) => {
      res.writeHead(200, { "content-length": "1000" });
      res.write(Buffer.alloc(100, 0x61), () => res.socket?.destroy());
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    t.after(() => new Promise<void>((r) => server.close(() => r())));
    const peer = new Peer({
      baseUrl: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
      token: "t",
      epoch: () => 1,
    });
    // Read at once, and read only after the drop (as a follower does after taking its lock).
    for (const when of ["at once", "after the drop"]) {
      const { res } = await peer.open("GET", "/snapshot", { timeoutMs: 5000 });
      // Unread, the answer closes once the connection is gone.
      if (when === "after the drop" && !res.destroyed) await new Promise((r) => res.once("close", r));
      const outcome = await Promise.race([
        readAll(res).then(
          () => "read a whole answer",
          (err: Error) => `failed: ${err.message}`,
        ),
        new Promise((r) => setTimeout(() => r("still waiting after 5 s"), 5000)),
      ]);
      assert.match(String(outcome), /^failed: /, `read ${when}`);
    }
  },
);
