/** Small tmpfs mounts for the full-disk and read-only cases (root only: false where it cannot mount). */
import { execFileSync } from "node:child_process";

export function tryMountTmpfs(mountpoint: string, options: string): boolean {
  try {
    execFileSync("mount", ["-t", "tmpfs", "-o", options, "tmpfs", mountpoint], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}
