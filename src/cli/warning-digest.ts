/**
 * Warnings of a burst, summarized per group: after a restore, `start` meets thousands of tasks,
 * agents and intents with the same problem, and one line each buried what mattered. A group with
 * more than `SHOW_ALL_UP_TO` warnings between two flushes prints its first `SHOW_FIRST` and a count;
 * `--verbose` prints every one, and `--json` keeps them all for the result document.
 */
export const SHOW_ALL_UP_TO = 5;
export const SHOW_FIRST = 3;

export class WarningDigest {
  /** Every warning, in order (kept only when the result document lists them). */
  readonly all: string[] = [];
  /** Per group since the last flush: its first lines (as many as might be shown) and a count. */
  private readonly pending = new Map<string, { first: string[]; count: number }>();

  constructor(private readonly o: { verbose: boolean; keepAll: boolean; print: (line: string) => void }) {}

  warn(line: string, group?: string): void {
    if (this.o.keepAll) this.all.push(line);
    if (group === undefined || this.o.verbose) {
      this.o.print(line);
      return;
    }
    let g = this.pending.get(group);
    if (!g) this.pending.set(group, (g = { first: [], count: 0 }));
    g.count++;
    if (g.first.length < SHOW_ALL_UP_TO) g.first.push(line);
  }

  /** Prints the pending groups: each in full when short, else its first lines and a count. */
  flush(): void {
    for (const [group, { first, count }] of this.pending) {
      if (count <= SHOW_ALL_UP_TO) {
        for (const l of first) this.o.print(l);
        continue;
      }
      for (const l of first.slice(0, SHOW_FIRST)) this.o.print(l);
      this.o.print(
        `... and ${count - SHOW_FIRST} more "${group}" warnings (${count} in all; ` +
          `--verbose prints every one, --json lists them under "warnings")`,
      );
    }
    this.pending.clear();
  }
}
