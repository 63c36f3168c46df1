/**
 * Runs the bernstein CLI in this process (same code as bin/bernstein) and reports its peak RSS
 * on stderr as one line `BENCH_RSS {"code":..,"peak_rss_bytes":..,"seconds":..}`.
 */
import { main } from "../../src/cli/main.js";

const t0 = process.hrtime.bigint();
const code = await main(process.argv.slice(2));
const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
process.stderr.write(
  `BENCH_RSS ${JSON.stringify({ code, seconds, peak_rss_bytes: process.resourceUsage().maxRSS * 1024 })}\n`,
);
process.exitCode = code;
