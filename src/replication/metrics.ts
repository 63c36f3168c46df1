/** Prometheus text exposition (version 0.0.4): just what the replication metrics need. */

export class MetricsText {
  private readonly lines: string[] = [];
  private readonly declared = new Set<string>();

  add(
    name: string,
    type: "gauge" | "counter",
    help: string,
    value: number | null,
    labels: Record<string, string> = {},
  ): this {
    if (!this.declared.has(name)) {
      this.declared.add(name);
      this.lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
    }
    const lbl = Object.entries(labels)
      .map(([k, v]) => `${k}="${v.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n")}"`)
      .join(",");
    const v = value === null || Number.isNaN(value) ? "NaN" : String(value);
    this.lines.push(`${name}${lbl ? `{${lbl}}` : ""} ${v}`);
    return this;
  }

  toString(): string {
    return this.lines.join("\n") + "\n";
  }
}
