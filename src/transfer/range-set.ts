/**
 * A set of non-negative integers kept as sorted, merged [start, end) ranges. Chunks that
 * arrive in order stay one range, so the set costs O(1) memory whatever the file size.
 */
export class RangeSet {
  private readonly starts: number[] = [];
  private readonly ends: number[] = [];
  private total = 0;

  /** How many integers the set holds. */
  get size(): number {
    return this.total;
  }

  /**
   * The set of `ranges` ([start, end) pairs, in order, not overlapping; touching ones merge), all
   * within [0, limit); null when they are not (they come from a peer). Costs one step per range,
   * not per integer: a resumed file of millions of chunks is a few ranges.
   */
  static fromRanges(ranges: ReadonlyArray<readonly [number, number]>, limit: number): RangeSet | null {
    const set = new RangeSet();
    let last = 0;
    for (const [start, end] of ranges) {
      if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || start < last || end <= start || end > limit) return null;
      if (set.ends.length > 0 && start === last) set.ends[set.ends.length - 1] = end;
      else {
        set.starts.push(start);
        set.ends.push(end);
      }
      set.total += end - start;
      last = end;
    }
    return set;
  }

  /** One past the largest integer held (0 when empty). */
  get end(): number {
    return this.ends.length === 0 ? 0 : this.ends[this.ends.length - 1]!;
  }

  /** The ranges, in order. */
  ranges(): Array<[number, number]> {
    return this.starts.map((s, i) => [s, this.ends[i]!]);
  }

  /** Index of the last range starting at or before n, or -1. */
  private find(n: number): number {
    let lo = 0;
    let hi = this.starts.length - 1;
    let found = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (this.starts[mid]! <= n) {
        found = mid;
        lo = mid + 1;
      } else {
        hi = mid - 1;
      }
    }
    return found;
  }

  has(n: number): boolean {
    const i = this.find(n);
    return i >= 0 && n < this.ends[i]!;
  }

  /** Adds every integer in [start, end), merging with the ranges it overlaps or touches. */
  addRange(start: number, end: number): void {
    if (end <= start) return;
    const left = this.find(start);
    const first = left >= 0 && this.ends[left]! >= start ? left : left + 1;
    const last = this.find(end);
    if (first > last) {
      this.starts.splice(first, 0, start);
      this.ends.splice(first, 0, end);
      this.total += end - start;
      return;
    }
    const from = Math.min(start, this.starts[first]!);
    const to = Math.max(end, this.ends[last]!);
    for (let k = first; k <= last; k++) this.total -= this.ends[k]! - this.starts[k]!;
    this.starts.splice(first, last - first + 1, from);
    this.ends.splice(first, last - first + 1, to);
    this.total += to - from;
  }

  /** Adds n; returns false when it was already there. */
  add(n: number): boolean {
    const i = this.find(n);
    if (i >= 0 && n < this.ends[i]!) return false;
    const joinsLeft = i >= 0 && this.ends[i] === n;
    const joinsRight = i + 1 < this.starts.length && this.starts[i + 1] === n + 1;
    if (joinsLeft && joinsRight) {
      this.ends[i] = this.ends[i + 1]!;
      this.starts.splice(i + 1, 1);
      this.ends.splice(i + 1, 1);
    } else if (joinsLeft) {
      this.ends[i] = n + 1;
    } else if (joinsRight) {
      this.starts[i + 1] = n;
    } else {
      this.starts.splice(i + 1, 0, n);
      this.ends.splice(i + 1, 0, n + 1);
    }
    this.total++;
    return true;
  }
}
