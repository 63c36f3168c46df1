/**
 * A finite double's shortest round-trip text, as String(x) prints it, into a young string.
 *
 * V8's String(x) (and `${x}`, x.toString()) goes through its number-string cache, and the text of
 * a double the cache misses is allocated in the old generation, since the cache lives there. A
 * stream of distinct values (every WAL line has its own timestamp) then fills the old generation
 * with garbage only a full GC frees, and the heap grows with the lines read. JSON.stringify prints
 * the same text (ECMA-262 Number::toString for a finite number) without the cache.
 */
export function finiteNumberText(x: number): string {
  return JSON.stringify(x);
}
