/** A count with its noun in the number it takes: "1 folder", "0 files", "2 files". */
export function counted(n: number, singular: string, plural = `${singular}s`): string {
  return `${n} ${n === 1 ? singular : plural}`;
}
