//! A set of sequence numbers kept as disjoint, non-adjacent half-open ranges.

use std::collections::BTreeMap;
use std::ops::Range;

use crate::queue::Seq;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct RangeSet {
    /// start -> end; disjoint and never touching (touching ranges are merged).
    map: BTreeMap<Seq, Seq>,
}

impl RangeSet {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub(crate) fn first(&self) -> Option<Range<Seq>> {
        self.map.iter().next().map(|(&s, &e)| s..e)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = Range<Seq>> + '_ {
        self.map.iter().map(|(&s, &e)| s..e)
    }

    pub(crate) fn insert(&mut self, r: Range<Seq>) {
        if r.start >= r.end {
            return;
        }
        let (mut start, mut end) = (r.start, r.end);
        // Merge with a range starting at or before `start` that reaches it.
        if let Some((&s, &e)) = self.map.range(..=start).next_back() {
            if e >= start {
                start = s;
                end = end.max(e);
                self.map.remove(&s);
            }
        }
        // Absorb every range starting inside [start, end].
        while let Some((&s, &e)) = self.map.range(start..=end).next() {
            end = end.max(e);
            self.map.remove(&s);
        }
        self.map.insert(start, end);
    }

    pub(crate) fn remove(&mut self, r: Range<Seq>) {
        if r.start >= r.end {
            return;
        }
        let mut touched: Vec<(Seq, Seq)> = Vec::new();
        if let Some((&s, &e)) = self.map.range(..r.start).next_back() {
            if e > r.start {
                touched.push((s, e));
            }
        }
        touched.extend(self.map.range(r.start..r.end).map(|(&s, &e)| (s, e)));
        for (s, e) in touched {
            self.map.remove(&s);
            if s < r.start {
                self.map.insert(s, r.start);
            }
            if e > r.end {
                self.map.insert(r.end, e);
            }
        }
    }

    /// True if every seq of `r` is in the set.
    pub(crate) fn contains_range(&self, r: &Range<Seq>) -> bool {
        if r.start >= r.end {
            return true;
        }
        match self.map.range(..=r.start).next_back() {
            Some((_, &e)) => e >= r.end,
            None => false,
        }
    }

    #[cfg(test)]
    pub(crate) fn contains(&self, seq: Seq) -> bool {
        self.contains_range(&(seq..seq + 1))
    }

    /// Forgets everything below `low`.
    pub(crate) fn remove_below(&mut self, low: Seq) {
        if low > 0 {
            self.remove(0..low);
        }
    }

    /// The parts of the set's ranges that fall in `r`, in order.
    pub(crate) fn overlapping(&self, r: &Range<Seq>) -> impl Iterator<Item = Range<Seq>> + '_ {
        let r = r.clone();
        let lead = self.map.range(..r.start).next_back();
        lead.into_iter()
            .chain(self.map.range(r.start..r.end.max(r.start)))
            .map(move |(&s, &e)| s.max(r.start)..e.min(r.end))
            .filter(|part| part.start < part.end)
    }

    /// Number of seqs in the set that fall in `r`.
    pub(crate) fn count_in(&self, r: &Range<Seq>) -> u64 {
        self.overlapping(r).map(|part| part.end - part.start).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_remove_merge() {
        let mut s = RangeSet::new();
        s.insert(5..10);
        s.insert(0..3);
        s.insert(3..5);
        assert_eq!(s.iter().collect::<Vec<_>>(), vec![0..10]);
        s.remove(2..4);
        assert_eq!(s.iter().collect::<Vec<_>>(), vec![0..2, 4..10]);
        assert!(s.contains_range(&(4..10)));
        assert!(!s.contains_range(&(1..5)));
        assert_eq!(s.count_in(&(1..6)), 3);
        s.insert(20..30);
        s.insert(1..25);
        assert_eq!(s.iter().collect::<Vec<_>>(), vec![0..30]);
        s.remove_below(29);
        assert_eq!(s.iter().collect::<Vec<_>>(), vec![29..30]);
        assert!(s.contains(29) && !s.contains(28));
        s.insert(40..50);
        s.insert(60..70);
        let parts: Vec<_> = s.overlapping(&(45..65)).collect();
        assert_eq!(parts, vec![45..50, 60..65]);
        assert_eq!(s.overlapping(&(30..40)).count(), 0);
        let reversed = Range { start: 50, end: 40 };
        assert_eq!(s.overlapping(&reversed).count(), 0);
    }
}
