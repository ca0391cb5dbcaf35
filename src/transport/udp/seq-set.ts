/**
 * Which sequence numbers arrived, for dropping duplicates: everything below `floor` plus a set
 * of the ones above it. Sequence numbers are dense and the flow-control window bounds how far
 * ahead of the floor one can be, so the set stays small.
 */
export class SeqSet {
  private floor = 0;
  private readonly above = new Set<number>();

  /** Records `seq`; false if it was already there. */
  add(seq: number): boolean {
    if (seq < this.floor || this.above.has(seq)) return false;
    if (seq === this.floor) {
      this.floor++;
      while (this.above.delete(this.floor)) this.floor++;
    } else {
      this.above.add(seq);
    }
    return true;
  }

  /** Every number below this one has arrived. */
  get contiguous(): number {
    return this.floor;
  }

  has(seq: number): boolean {
    return seq < this.floor || this.above.has(seq);
  }

  /** Numbers above the contiguous prefix (held out of order). */
  get gaps(): number {
    return this.above.size;
  }
}
